//! Who may do what on a connection: the shared secrets of `--auth-token` and
//! `--admin-token`, the role a HELLO earns, and which requests need the admin role.
//!
//! The rules, written up for operators in `docs/security.md`:
//!
//! | auth token | admin token | HELLO presents         | role      |
//! |------------|-------------|------------------------|-----------|
//! | none       | none        | anything or nothing    | admin     |
//! | set        | none        | the auth token         | admin     |
//! | none       | set         | nothing                | player    |
//! | set        | set         | the auth token         | player    |
//! | any        | set         | the admin token        | admin     |
//! | otherwise  |             | a wrong or no token    | refused (`unauthorized`, closes) |
//!
//! With no token configured Cairn behaves as it always did: it listens on loopback and
//! trusts whoever can reach it. A *player* connection may send every request but the
//! admin operations ([`requires_admin`]). Tokens are compared with `subtle`'s
//! constant-time equality, a small, widely used crate, rather than by hand: the time a
//! comparison takes must not tell an attacker how many leading bytes were right.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::constants::{AUTH_TOKEN_SIZE_MAX, AUTH_TOKEN_SIZE_MIN};
use crate::event::EventKind;
use crate::protocol::Request;

/// A shared secret from the operator. Compared in constant time; never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret of `AUTH_TOKEN_SIZE_MIN` to `AUTH_TOKEN_SIZE_MAX` bytes, or why not.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Secret, String> {
        let bytes = bytes.into();
        if bytes.len() < AUTH_TOKEN_SIZE_MIN || bytes.len() > AUTH_TOKEN_SIZE_MAX {
            return Err(format!(
                "a token must be {AUTH_TOKEN_SIZE_MIN} to {AUTH_TOKEN_SIZE_MAX} bytes long, not {}",
                bytes.len()
            ));
        }
        Ok(Secret(bytes))
    }

    /// Returns true if and only if `presented` is this secret. The time taken depends on
    /// the lengths only, never on where the bytes first differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_slice().ct_eq(presented).into()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What a connection may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not greeted yet: only HELLO.
    None,
    /// Every request but the admin operations.
    Player,
    /// Every request.
    Admin,
}

/// The role a HELLO presenting `token` (empty: none) earns, or `None` if it is refused.
pub fn role_for(auth: Option<&Secret>, admin: Option<&Secret>, token: &[u8]) -> Option<Role> {
    // Both comparisons always run, so the time taken does not tell which token matched.
    let is_admin = admin.is_some_and(|secret| secret.matches(token));
    let is_auth = auth.is_some_and(|secret| secret.matches(token));
    match (auth.is_some(), admin.is_some()) {
        (false, false) => Some(Role::Admin),
        _ if is_admin => Some(Role::Admin),
        (true, false) if is_auth => Some(Role::Admin),
        (true, true) if is_auth => Some(Role::Player),
        (false, true) if token.is_empty() => Some(Role::Player),
        _ => None,
    }
}

/// Returns true if and only if `request` is an admin operation: creating, ending or
/// deleting a hunt, placing or removing a treasure, or reading STATS.
pub fn requires_admin(request: &Request) -> bool {
    match request {
        Request::Stats => true,
        Request::Event(event) => matches!(
            event.kind(),
            EventKind::CreateHunt
                | EventKind::EndHunt
                | EventKind::DeleteHunt
                | EventKind::PlaceTreasure
                | EventKind::RemoveTreasure
        ),
        Request::Hello { .. } | Request::Ping | Request::Subscribe { .. } | Request::Unsubscribe { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    const AUTH: &[u8] = b"game-clients-token-0123";
    const ADMIN: &[u8] = b"admin-operators-token-4567";

    #[test]
    fn roles_follow_the_table() {
        let auth = Secret::new(AUTH).unwrap();
        let admin = Secret::new(ADMIN).unwrap();
        let check = |auth: Option<&Secret>, admin: Option<&Secret>, token: &[u8], expected: Option<Role>| {
            assert_eq!(role_for(auth, admin, token), expected, "token {:?}", String::from_utf8_lossy(token));
        };
        // Nothing configured: everyone is trusted, as on loopback.
        check(None, None, b"", Some(Role::Admin));
        check(None, None, b"whatever", Some(Role::Admin));
        // An auth token only: it grants everything, nothing else gets in.
        check(Some(&auth), None, AUTH, Some(Role::Admin));
        check(Some(&auth), None, b"", None);
        check(Some(&auth), None, &AUTH[..AUTH.len() - 1], None);
        check(Some(&auth), None, b"game-clients-token-0124", None);
        // An admin token only: anyone may play, only its holders administer.
        check(None, Some(&admin), b"", Some(Role::Player));
        check(None, Some(&admin), ADMIN, Some(Role::Admin));
        check(None, Some(&admin), AUTH, None);
        // Both: the auth token plays, the admin token administers.
        check(Some(&auth), Some(&admin), AUTH, Some(Role::Player));
        check(Some(&auth), Some(&admin), ADMIN, Some(Role::Admin));
        check(Some(&auth), Some(&admin), b"", None);
        check(Some(&auth), Some(&admin), b"admin-operators-token-4568", None);
    }

    #[test]
    fn secrets_have_bounded_lengths_and_never_print() {
        assert!(Secret::new(vec![b'x'; AUTH_TOKEN_SIZE_MIN - 1]).is_err());
        assert!(Secret::new(vec![b'x'; AUTH_TOKEN_SIZE_MAX + 1]).is_err());
        let secret = Secret::new(AUTH).unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret, Secret::new(AUTH).unwrap());
        assert_ne!(secret, Secret::new(ADMIN).unwrap());
    }

    #[test]
    fn admin_operations_are_the_setup_ones_and_stats() {
        let event = |event: Event| requires_admin(&Request::Event(event));
        assert!(requires_admin(&Request::Stats));
        assert!(event(Event::EndHunt { hunt: 1 }));
        assert!(event(Event::DeleteHunt { hunt: 1 }));
        assert!(event(Event::RemoveTreasure { hunt: 1, treasure: 2 }));
        assert!(!event(Event::Top { hunt: 1, count: 3 }));
        assert!(!event(Event::Rank { hunt: 1, player: 2 }));
        assert!(!requires_admin(&Request::Ping));
        assert!(!requires_admin(&Request::Subscribe { hunt: 1, topics: 1 }));
    }
}
