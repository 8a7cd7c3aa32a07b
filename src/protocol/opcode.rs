//! The opcode byte of a frame: which request, reply, push or error a frame carries.
//!
//! The opcode space is split into ranges so a peer can classify any frame from its
//! opcode alone: requests 0x01..=0x1E, pushes 0x40..=0x4F, the error frame 0x7F, and
//! replies, which are their request's opcode with the high bit ([`REPLY_BIT`]) set. Event
//! requests occupy 0x10 + [`EventKind`] so the kind and the opcode convert by addition.
//! `docs/protocol.md` lists every opcode; a test below keeps it honest.

use crate::event::EventKind;

/// Set in the opcode of every reply: a reply's opcode is its request's opcode | 0x80.
pub const REPLY_BIT: u8 = 0x80;

/// Opcode of the first event request; event requests are `EVENT_BASE + EventKind`.
const EVENT_BASE: u8 = 0x10;

/// Every opcode a frame may carry, except replies (see [`Opcode::reply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Opcode {
    /// Request: version handshake; must be a connection's first frame.
    Hello = 0x01,
    /// Request: liveness probe.
    Ping = 0x02,
    /// Request: server statistics as a JSON document.
    Stats = 0x03,
    /// Request: follow topics of a hunt.
    Subscribe = 0x04,
    /// Request: stop following a hunt.
    Unsubscribe = 0x05,
    /// Request: [`crate::event::Event::CreateHunt`].
    CreateHunt = EVENT_BASE,
    /// Request: [`crate::event::Event::EndHunt`].
    EndHunt = EVENT_BASE + 1,
    /// Request: [`crate::event::Event::DeleteHunt`].
    DeleteHunt = EVENT_BASE + 2,
    /// Request: [`crate::event::Event::PlaceTreasure`].
    PlaceTreasure = EVENT_BASE + 3,
    /// Request: [`crate::event::Event::RemoveTreasure`].
    RemoveTreasure = EVENT_BASE + 4,
    /// Request: [`crate::event::Event::Join`].
    Join = EVENT_BASE + 5,
    /// Request: [`crate::event::Event::Leave`].
    Leave = EVENT_BASE + 6,
    /// Request: [`crate::event::Event::Move`].
    Move = EVENT_BASE + 7,
    /// Request: [`crate::event::Event::Dig`].
    Dig = EVENT_BASE + 8,
    /// Request: [`crate::event::Event::AdjustScore`].
    AdjustScore = EVENT_BASE + 9,
    /// Request: [`crate::event::Event::Top`].
    Top = EVENT_BASE + 10,
    /// Request: [`crate::event::Event::Rank`].
    Rank = EVENT_BASE + 11,
    /// Request: [`crate::event::Event::Around`].
    Around = EVENT_BASE + 12,
    /// Request: [`crate::event::Event::Hint`].
    Hint = EVENT_BASE + 13,
    /// Request: [`crate::event::Event::TreasureInfo`].
    TreasureInfo = EVENT_BASE + 14,
    /// Push: a player claimed a treasure (topic: discoveries).
    Discovery = 0x40,
    /// Push: a rank changed among the top ranks (topic: top).
    TopChanged = 0x41,
    /// Push: a lifecycle stage (topic: lifecycle).
    Lifecycle = 0x42,
    /// Push: the subscriber missed a range of pushes.
    Gap = 0x4E,
    /// Push: the server is about to close the connection, and why.
    Goodbye = 0x4F,
    /// The error frame: a request failed, or the connection is being refused.
    Error = 0x7F,
}

impl Opcode {
    /// Number of opcodes (replies not counted).
    pub const COUNT: usize = 26;

    /// Every opcode, in numeric order.
    pub const ALL: [Opcode; Opcode::COUNT] = [
        Opcode::Hello,
        Opcode::Ping,
        Opcode::Stats,
        Opcode::Subscribe,
        Opcode::Unsubscribe,
        Opcode::CreateHunt,
        Opcode::EndHunt,
        Opcode::DeleteHunt,
        Opcode::PlaceTreasure,
        Opcode::RemoveTreasure,
        Opcode::Join,
        Opcode::Leave,
        Opcode::Move,
        Opcode::Dig,
        Opcode::AdjustScore,
        Opcode::Top,
        Opcode::Rank,
        Opcode::Around,
        Opcode::Hint,
        Opcode::TreasureInfo,
        Opcode::Discovery,
        Opcode::TopChanged,
        Opcode::Lifecycle,
        Opcode::Gap,
        Opcode::Goodbye,
        Opcode::Error,
    ];

    /// The opcode with this byte, if any; reply bytes (high bit set) are not opcodes.
    pub const fn from_u8(byte: u8) -> Option<Opcode> {
        let opcode = match byte {
            0x01 => Opcode::Hello,
            0x02 => Opcode::Ping,
            0x03 => Opcode::Stats,
            0x04 => Opcode::Subscribe,
            0x05 => Opcode::Unsubscribe,
            0x40 => Opcode::Discovery,
            0x41 => Opcode::TopChanged,
            0x42 => Opcode::Lifecycle,
            0x4E => Opcode::Gap,
            0x4F => Opcode::Goodbye,
            0x7F => Opcode::Error,
            byte if byte >= EVENT_BASE && ((byte - EVENT_BASE) as usize) < EventKind::COUNT => {
                return Some(Opcode::for_event(EventKind::ALL[(byte - EVENT_BASE) as usize]));
            }
            _ => return None,
        };
        Some(opcode)
    }

    /// The request opcode of an event kind.
    pub const fn for_event(kind: EventKind) -> Opcode {
        match kind {
            EventKind::CreateHunt => Opcode::CreateHunt,
            EventKind::EndHunt => Opcode::EndHunt,
            EventKind::DeleteHunt => Opcode::DeleteHunt,
            EventKind::PlaceTreasure => Opcode::PlaceTreasure,
            EventKind::RemoveTreasure => Opcode::RemoveTreasure,
            EventKind::Join => Opcode::Join,
            EventKind::Leave => Opcode::Leave,
            EventKind::Move => Opcode::Move,
            EventKind::Dig => Opcode::Dig,
            EventKind::AdjustScore => Opcode::AdjustScore,
            EventKind::Top => Opcode::Top,
            EventKind::Rank => Opcode::Rank,
            EventKind::Around => Opcode::Around,
            EventKind::Hint => Opcode::Hint,
            EventKind::TreasureInfo => Opcode::TreasureInfo,
        }
    }

    /// The event kind this opcode requests, if it is an event request.
    pub const fn event_kind(self) -> Option<EventKind> {
        let byte = self as u8;
        if byte >= EVENT_BASE && ((byte - EVENT_BASE) as usize) < EventKind::COUNT {
            Some(EventKind::ALL[(byte - EVENT_BASE) as usize])
        } else {
            None
        }
    }

    /// Returns true if and only if a client sends frames with this opcode.
    pub const fn is_request(self) -> bool {
        (self as u8) < 0x40
    }

    /// Returns true if and only if this opcode is a server-initiated push.
    pub const fn is_push(self) -> bool {
        matches!(self as u8, 0x40..=0x4F)
    }

    /// The opcode byte of the reply to this request.
    pub const fn reply(self) -> u8 {
        assert!(self.is_request(), "only requests have replies");
        self as u8 | REPLY_BIT
    }

    /// The flag bits a frame with this opcode may set; any other bit is an error.
    pub const fn flags_allowed(self) -> u8 {
        match self {
            Opcode::Move => super::frame::FLAG_QUIET,
            Opcode::Stats => super::frame::FLAG_MARK,
            Opcode::Discovery | Opcode::TopChanged | Opcode::Lifecycle | Opcode::Gap | Opcode::Goodbye => {
                super::frame::FLAG_PUSH
            }
            _ => 0,
        }
    }

    /// The name used in `docs/protocol.md` and in error messages.
    pub const fn name(self) -> &'static str {
        match self {
            Opcode::Hello => "HELLO",
            Opcode::Ping => "PING",
            Opcode::Stats => "STATS",
            Opcode::Subscribe => "SUBSCRIBE",
            Opcode::Unsubscribe => "UNSUBSCRIBE",
            Opcode::CreateHunt => "CREATE_HUNT",
            Opcode::EndHunt => "END_HUNT",
            Opcode::DeleteHunt => "DELETE_HUNT",
            Opcode::PlaceTreasure => "PLACE_TREASURE",
            Opcode::RemoveTreasure => "REMOVE_TREASURE",
            Opcode::Join => "JOIN",
            Opcode::Leave => "LEAVE",
            Opcode::Move => "MOVE",
            Opcode::Dig => "DIG",
            Opcode::AdjustScore => "ADJUST_SCORE",
            Opcode::Top => "TOP",
            Opcode::Rank => "RANK",
            Opcode::Around => "AROUND",
            Opcode::Hint => "HINT",
            Opcode::TreasureInfo => "TREASURE_INFO",
            Opcode::Discovery => "DISCOVERY",
            Opcode::TopChanged => "TOP_CHANGED",
            Opcode::Lifecycle => "LIFECYCLE",
            Opcode::Gap => "GAP",
            Opcode::Goodbye => "GOODBYE",
            Opcode::Error => "ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ErrorCode;

    const DOC: &str = include_str!("../../docs/protocol.md");

    #[test]
    fn every_byte_maps_back_to_its_opcode() {
        for opcode in Opcode::ALL {
            assert_eq!(Opcode::from_u8(opcode as u8), Some(opcode));
        }
        let known = (0..=u8::MAX).filter(|&byte| Opcode::from_u8(byte).is_some()).count();
        assert_eq!(known, Opcode::COUNT);
        assert!(Opcode::ALL.windows(2).all(|pair| (pair[0] as u8) < (pair[1] as u8)));
    }

    #[test]
    fn event_opcodes_follow_event_kinds() {
        for kind in EventKind::ALL {
            let opcode = Opcode::for_event(kind);
            assert_eq!(opcode as u8, EVENT_BASE + kind as u8);
            assert_eq!(opcode.event_kind(), Some(kind));
        }
        let events = Opcode::ALL.iter().filter(|opcode| opcode.event_kind().is_some()).count();
        assert_eq!(events, EventKind::COUNT);
    }

    #[test]
    fn ranges_classify_every_opcode() {
        for opcode in Opcode::ALL {
            let classes = [opcode.is_request(), opcode.is_push(), opcode == Opcode::Error];
            assert_eq!(classes.iter().filter(|&&class| class).count(), 1, "{opcode:?}");
            if opcode.is_request() {
                assert_eq!(Opcode::from_u8(opcode.reply()), None, "{opcode:?}");
            }
        }
    }

    #[test]
    fn the_document_names_every_opcode_and_its_bytes() {
        for opcode in Opcode::ALL {
            let hex = format!("0x{:02X}", opcode as u8);
            assert!(DOC.contains(opcode.name()), "docs/protocol.md does not name {}", opcode.name());
            assert!(DOC.contains(&hex), "docs/protocol.md does not mention {hex} ({})", opcode.name());
            if opcode.is_request() {
                let reply = format!("0x{:02X}", opcode.reply());
                assert!(DOC.contains(&reply), "docs/protocol.md does not mention reply {reply} ({})", opcode.name());
            }
        }
    }

    #[test]
    fn the_document_lists_every_error_code() {
        for code in ErrorCode::ALL {
            let row = format!("| {} | `{}` |", code as u16, code.name());
            assert!(DOC.contains(&row), "docs/protocol.md has no table row {row}");
        }
        for code in crate::outcome::Rejection::CODES {
            let row = format!("| {code} | `");
            assert!(DOC.contains(&row), "docs/protocol.md has no table row for rejection code {code}");
        }
    }
}
