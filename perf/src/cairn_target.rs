//! Cairn as a target: the hot-path encoder and reply parser (through `cairn::protocol`,
//! the same codec the server uses), and the blocking side: HELLO, set-up (create hunts,
//! place treasures, join players), subscriptions, STATS, the end-of-run view for
//! validation (TREASURE_INFO and RANK), and clean-up; and the tokens a HELLO presents
//! to a server started with `--auth-token` or `--admin-token` ([`Tokens`]).
//!
//! Moves are sent without FLAG_QUIET: every event gets a reply, so every event has a
//! latency, the closed loop can count what it has in flight, and the comparison with
//! Redis (which answers every command) is like for like. Quiet moves would cut the reply
//! bytes of 80% of the default mix; measuring them needs a barrier the protocol does not
//! give across hunts (see `perf/README.md`).

use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use cairn::constants::{AUTH_TOKEN_SIZE_MAX, AUTH_TOKEN_SIZE_MIN};
use cairn::event::Event;
use cairn::protocol::{
    decode_response, encode_request, next_frame, ErrorCode, PushBody, ReplyBody, Request, Response, FLAG_MARK,
    TOPICS_ALL,
};
use cairn::protocol::{FrameHeader, REPLY_BIT};

use crate::ledger::ServerView;
use crate::target::{Ack, Reply};
use crate::workload::{Op, Players, World};

/// Requests written before their replies are read, in the blocking exchanges: small
/// enough that neither side's socket buffer fills while the other is still writing.
const BATCH_SIZE: usize = 1_024;
/// How long a blocking exchange waits for the server.
const BLOCKING_TIMEOUT: Duration = Duration::from_secs(30);
/// Topic mask of the fanout subscribers: discoveries only, the topic Redis mirrors.
pub const SUBSCRIBER_TOPICS: u8 = 1;

/// Appends the frame of `op` as request `id`.
pub fn encode(hunt_base: u32, op: &Op, id: u32, out: &mut Vec<u8>) {
    let event = match *op {
        Op::Move { hunt, player, seq, position } => Event::Move { hunt: hunt_base + hunt, player, seq, position },
        Op::Dig { hunt, player, seq, treasure, position } => {
            Event::Dig { hunt: hunt_base + hunt, player, seq, treasure, position }
        }
        Op::Adjust { hunt, player, seq, delta } => Event::AdjustScore { hunt: hunt_base + hunt, player, seq, delta },
        Op::Top { hunt, count } => Event::Top { hunt: hunt_base + hunt, count },
        Op::Rank { hunt, player } => Event::Rank { hunt: hunt_base + hunt, player },
        Op::Around { hunt, player, radius } => Event::Around { hunt: hunt_base + hunt, player, radius },
        Op::Hint { hunt, player } => Event::Hint { hunt: hunt_base + hunt, player },
    };
    encode_request(id, 0, &Request::Event(event), out).expect("event requests always encode");
}

/// Appends a PING frame as request `id` (a subscriber's keepalive).
pub fn encode_ping(id: u32, out: &mut Vec<u8>) {
    encode_request(id, 0, &Request::Ping, out).expect("PING always encodes");
}

/// Parses one frame from the server.
pub fn parse(buffer: &[u8]) -> Result<Option<(usize, Reply)>> {
    let Some(size) = next_frame(buffer).map_err(|error| anyhow!("cannot frame the server's stream: {error}"))? else {
        return Ok(None);
    };
    let response = decode_response(&buffer[..size]).map_err(|error| anyhow!("undecodable frame: {error}"))?;
    let reply = match response {
        Response::Reply { request_id, body } => {
            let ack = match body {
                ReplyBody::Dug { claim } => Ack::Award { points: claim.points as i64 },
                _ => Ack::Done,
            };
            Reply { id: Some(request_id), ack }
        }
        Response::Error { request_id, code, message } => {
            let ack = if code >= 100 { Ack::Rejected(code) } else { Ack::Failed(format!("error {code}: {message}")) };
            Reply { id: Some(request_id), ack }
        }
        Response::Push(PushBody::Notice(notice)) => {
            Reply { id: None, ack: Ack::Push { hunt: notice.hunt, seq: notice.seq } }
        }
        Response::Push(PushBody::Gap(gap)) => Reply { id: None, ack: Ack::Gap { missed: gap.last - gap.first + 1 } },
        Response::Push(PushBody::Goodbye { code, message }) => {
            Reply { id: None, ack: Ack::Failed(format!("goodbye {code}: {message}")) }
        }
    };
    Ok(Some((size, reply)))
}

/// Parses one frame from the null server: any reply frame acknowledges its request.
pub fn parse_null(buffer: &[u8]) -> Result<Option<(usize, Reply)>> {
    let Some(size) = next_frame(buffer).map_err(|error| anyhow!("cannot frame the null server's stream: {error}"))?
    else {
        return Ok(None);
    };
    let header = FrameHeader::parse(buffer[..12].try_into().expect("a frame holds its header"));
    if header.opcode & REPLY_BIT == 0 {
        bail!("the null server sent opcode {:#04x}, not a reply", header.opcode);
    }
    Ok(Some((size, Reply { id: Some(header.request_id), ack: Ack::Done })))
}

/// Environment variable of the auth token, read by `cairn serve` and by `cairn-perf`.
pub const AUTH_TOKEN_VARIABLE: &str = "CAIRN_AUTH_TOKEN";
/// Environment variable of the admin token, read by `cairn serve` and by `cairn-perf`.
pub const ADMIN_TOKEN_VARIABLE: &str = "CAIRN_ADMIN_TOKEN";

/// A token from `--auth-token`, `--admin-token` or their variables. Its `Debug` is
/// redacted and nothing prints it: reports, JSON and CSV never carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl From<String> for Token {
    /// Infallible, so clap never echoes a token in a parse error; [`Tokens::new`] checks it.
    fn from(text: String) -> Token {
        Token(text)
    }
}

impl Token {
    /// The secret itself, for a HELLO or a spawned server's environment only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The tokens the harness presents, and which connection presents which. The server
/// (`cairn::server::auth::role_for`) gives the admin role to the admin token always, and
/// to the auth token when it has no admin token; without an auth token it lets a HELLO
/// with no token play. So set-up connections (hunts, treasures, STATS, clean-up) present
/// the admin token when given, else the auth token; load and subscriber connections
/// present the auth token, else nothing, and never spread the admin token.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// `--auth-token`: what load connections present.
    pub auth: Option<Token>,
    /// `--admin-token`: what set-up connections present.
    pub admin: Option<Token>,
}

impl Tokens {
    /// Checks the tokens against the server's own rules (`AUTH_TOKEN_SIZE_MIN` to
    /// `AUTH_TOKEN_SIZE_MAX` bytes, and the two must differ), so a spawned server does not
    /// refuse to start over them and a running one is never sent a token it cannot hold.
    /// An empty token is none, as an empty variable is to `cairn serve`. No message
    /// carries a token.
    pub fn new(auth: Option<Token>, admin: Option<Token>) -> Result<Tokens> {
        let tokens =
            Tokens { auth: auth.filter(|token| !token.0.is_empty()), admin: admin.filter(|token| !token.0.is_empty()) };
        for (token, flag, variable) in [
            (&tokens.auth, "--auth-token", AUTH_TOKEN_VARIABLE),
            (&tokens.admin, "--admin-token", ADMIN_TOKEN_VARIABLE),
        ] {
            let size = token.as_ref().map_or(AUTH_TOKEN_SIZE_MIN, |token| token.0.len());
            if !(AUTH_TOKEN_SIZE_MIN..=AUTH_TOKEN_SIZE_MAX).contains(&size) {
                bail!(
                    "{flag} (or {variable}): a token must be {AUTH_TOKEN_SIZE_MIN} to {AUTH_TOKEN_SIZE_MAX} bytes \
                     long, not {size}"
                );
            }
        }
        if tokens.auth.is_some() && tokens.auth == tokens.admin {
            bail!("--admin-token must differ from --auth-token (the server refuses to start with the two equal)");
        }
        Ok(tokens)
    }

    /// What a set-up connection presents.
    pub fn setup(&self) -> Credential<'_> {
        match (&self.admin, &self.auth) {
            (Some(admin), _) => Credential::Admin(admin),
            (None, Some(auth)) => Credential::Auth(auth),
            (None, None) => Credential::Nothing,
        }
    }

    /// What a load or subscriber connection presents.
    pub fn load(&self) -> Credential<'_> {
        self.auth.as_ref().map_or(Credential::Nothing, Credential::Auth)
    }
}

/// The token one HELLO presents, and which flag it came from.
#[derive(Clone, Copy, Debug)]
pub enum Credential<'a> {
    /// No token.
    Nothing,
    /// The auth token.
    Auth(&'a Token),
    /// The admin token.
    Admin(&'a Token),
}

impl Credential<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Credential::Nothing => &[],
            Credential::Auth(token) | Credential::Admin(token) => token.0.as_bytes(),
        }
    }

    /// What to tell the user when the server refused this credential's HELLO.
    fn refused(&self, code: u16, message: &str) -> anyhow::Error {
        let error = format!("error {code} {}: {message}", ErrorCode::Unauthorized.name());
        match self {
            Credential::Nothing => anyhow!(
                "the server requires a token and refused a HELLO without one ({error}): pass --auth-token or \
                 {AUTH_TOKEN_VARIABLE}"
            ),
            Credential::Auth(_) => anyhow!(
                "the server refused the auth token ({error}): pass the server's auth token with --auth-token or \
                 {AUTH_TOKEN_VARIABLE}"
            ),
            Credential::Admin(_) => anyhow!(
                "the server refused the admin token ({error}): pass the server's admin token with --admin-token or \
                 {ADMIN_TOKEN_VARIABLE}"
            ),
        }
    }
}

/// The error of an answer that refused `what`: error 14 says the admin token is missing.
fn refusal(what: &str, code: u16, message: &str) -> anyhow::Error {
    if code == ErrorCode::AdminRequired.to_u16() {
        anyhow!(
            "the server refused {what}, an admin operation (error {code} {}: {message}): pass --admin-token or \
             {ADMIN_TOKEN_VARIABLE}",
            ErrorCode::AdminRequired.name()
        )
    } else {
        anyhow!("{what} refused: error {code}: {message}")
    }
}

/// A blocking connection for everything outside the measured loop.
pub struct Blocking {
    stream: TcpStream,
    input: Vec<u8>,
    next_id: u32,
    /// Shards, from the HELLO reply.
    pub shards: u16,
}

impl Blocking {
    /// Connects and says HELLO presenting `credential`.
    pub fn connect(addr: &str, credential: Credential<'_>) -> Result<Blocking> {
        let stream = TcpStream::connect(addr).with_context(|| format!("cannot connect to cairn at {addr}"))?;
        Blocking::greet(stream, credential)
    }

    /// Says HELLO presenting `credential` on a stream already connected (one whose socket
    /// options the caller chose, as the soak's slow subscribers do).
    pub fn greet(stream: TcpStream, credential: Credential<'_>) -> Result<Blocking> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(BLOCKING_TIMEOUT))?;
        let mut blocking = Blocking { stream, input: Vec::new(), next_id: 1, shards: 0 };
        let hello = Request::Hello { version_min: 1, version_max: 1, name: "cairn-perf", token: credential.bytes() };
        match blocking.exchange(&[hello])?.pop() {
            Some(Response::Reply { body: ReplyBody::Hello(hello), .. }) => blocking.shards = hello.shard_count,
            Some(Response::Error { code, message, .. }) if code == ErrorCode::Unauthorized.to_u16() => {
                return Err(credential.refused(code, &message));
            }
            other => bail!("HELLO was answered with {other:?}"),
        }
        Ok(blocking)
    }

    /// The connected stream, handed over after HELLO (and any subscriptions).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// The stream and the bytes already read from it but not yet parsed: after a
    /// SUBSCRIBE, pushes may have arrived behind the last reply, and dropping them would
    /// cut a frame in half.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.input)
    }

    /// Sends `requests` and returns their responses in request order (pushes skipped).
    pub fn exchange(&mut self, requests: &[Request]) -> Result<Vec<Response>> {
        self.exchange_with_flags(requests, 0)
    }

    /// As [`Self::exchange`], with `flags` on every request.
    fn exchange_with_flags(&mut self, requests: &[Request], flags: u8) -> Result<Vec<Response>> {
        let mut responses = Vec::with_capacity(requests.len());
        for batch in requests.chunks(BATCH_SIZE) {
            let first = self.next_id;
            let mut out = Vec::with_capacity(batch.len() * 40);
            for request in batch {
                encode_request(self.next_id, flags, request, &mut out).map_err(|error| anyhow!("{error}"))?;
                self.next_id += 1;
            }
            self.stream.write_all(&out).context("cannot write to cairn")?;
            let mut answers: Vec<Option<Response>> = vec![None; batch.len()];
            let mut missing = batch.len();
            while missing > 0 {
                let response = self.read_response()?;
                let id = match &response {
                    Response::Reply { request_id, .. } | Response::Error { request_id, .. } => *request_id,
                    Response::Push(PushBody::Goodbye { message, .. }) => bail!("cairn said goodbye: {message}"),
                    Response::Push(_) => continue,
                };
                let index = id.wrapping_sub(first) as usize;
                let slot = answers.get_mut(index).with_context(|| format!("a reply to unknown request {id}"))?;
                if slot.replace(response).is_none() {
                    missing -= 1;
                }
            }
            responses.extend(answers.into_iter().map(|answer| answer.expect("every answer arrived")));
        }
        Ok(responses)
    }

    fn read_response(&mut self) -> Result<Response> {
        loop {
            if let Some(size) = next_frame(&self.input).map_err(|error| anyhow!("{error}"))? {
                let response = decode_response(&self.input[..size]).map_err(|error| anyhow!("{error}"))?;
                self.input.drain(..size);
                return Ok(response);
            }
            let mut chunk = [0u8; 64 * 1024];
            let read = self.stream.read(&mut chunk).context("cannot read from cairn")?;
            if read == 0 {
                bail!("cairn closed the connection");
            }
            self.input.extend_from_slice(&chunk[..read]);
        }
    }

    /// The STATS document, and a new allocation mark (the MARK flag), so the next call
    /// reports allocations per event over exactly the stretch between the two.
    pub fn stats(&mut self) -> Result<serde_json::Value> {
        match self.exchange_with_flags(&[Request::Stats], FLAG_MARK)?.pop() {
            Some(Response::Reply { body: ReplyBody::Stats { json }, .. }) => {
                serde_json::from_str(&json).context("STATS is not JSON")
            }
            Some(Response::Error { code, message, .. }) => Err(refusal("STATS", code, &message)),
            other => bail!("STATS was answered with {other:?}"),
        }
    }
}

fn expect_ok(what: &str, responses: Vec<Response>) -> Result<()> {
    for response in responses {
        if let Response::Error { code, message, .. } = response {
            return Err(refusal(what, code, &message));
        }
    }
    Ok(())
}

/// Creates every hunt, places its treasures and joins every player (seq 1) at its start.
pub fn setup(blocking: &mut Blocking, world: &World, hunt_base: u32, players: &[&Players]) -> Result<()> {
    let spec = world.hunt_spec();
    let hunts: Vec<Request> = (0..world.scenario.hunts)
        .map(|hunt| Request::Event(Event::CreateHunt { hunt: hunt_base + hunt, spec }))
        .collect();
    expect_ok("CREATE_HUNT", blocking.exchange(&hunts)?)?;
    let treasures: Vec<Request> = (0..world.scenario.hunts)
        .flat_map(|hunt| {
            (0..world.scenario.treasures.count).map(move |treasure| {
                Request::Event(Event::PlaceTreasure {
                    hunt: hunt_base + hunt,
                    treasure: world.treasure_spec(hunt, treasure),
                })
            })
        })
        .collect();
    expect_ok("PLACE_TREASURE", blocking.exchange(&treasures)?)?;
    let joins: Vec<Request> = players
        .iter()
        .flat_map(|owned| {
            owned.players.iter().enumerate().map(|(index, player)| {
                let position = owned.position(world, index);
                Request::Event(Event::Join { hunt: hunt_base + player.hunt, player: player.player, seq: 1, position })
            })
        })
        .collect();
    expect_ok("JOIN", blocking.exchange(&joins)?)
}

/// Subscribes a fresh connection to the discoveries of `hunts` (at most the protocol's
/// 256 per connection).
pub fn subscribe(blocking: &mut Blocking, hunt_base: u32, hunts: &[u32]) -> Result<()> {
    let requests: Vec<Request> = hunts
        .iter()
        .map(|hunt| Request::Subscribe { hunt: hunt_base + hunt, topics: SUBSCRIBER_TOPICS & TOPICS_ALL })
        .collect();
    expect_ok("SUBSCRIBE", blocking.exchange(&requests)?)
}

/// The server's state for validation: every treasure's claims and every player's
/// standing.
pub fn server_view(blocking: &mut Blocking, world: &World, hunt_base: u32) -> Result<ServerView> {
    let scenario = &world.scenario;
    let infos: Vec<Request> = (0..scenario.hunts)
        .flat_map(|hunt| {
            (0..scenario.treasures.count)
                .map(move |treasure| Request::Event(Event::TreasureInfo { hunt: hunt_base + hunt, treasure }))
        })
        .collect();
    let mut view = ServerView::default();
    for response in blocking.exchange(&infos)? {
        match response {
            Response::Reply { body: ReplyBody::Treasure(state), .. } => {
                view.treasures.push((state.claimed, state.capacity))
            }
            other => bail!("TREASURE_INFO was answered with {other:?}"),
        }
    }
    let ranks: Vec<Request> = (0..scenario.hunts)
        .flat_map(|hunt| {
            (0..scenario.players_per_hunt)
                .map(move |player| Request::Event(Event::Rank { hunt: hunt_base + hunt, player }))
        })
        .collect();
    for response in blocking.exchange(&ranks)? {
        match response {
            Response::Reply { body: ReplyBody::Standing(standing), .. } => {
                view.players.push((standing.score, Some(standing.claims)))
            }
            other => bail!("RANK was answered with {other:?}"),
        }
    }
    Ok(view)
}

/// Deletes the run's hunts, so a long-lived server does not keep them.
pub fn teardown(blocking: &mut Blocking, world: &World, hunt_base: u32) -> Result<()> {
    let deletes: Vec<Request> =
        (0..world.scenario.hunts).map(|hunt| Request::Event(Event::DeleteHunt { hunt: hunt_base + hunt })).collect();
    expect_ok("DELETE_HUNT", blocking.exchange(&deletes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn::event::Position;
    use cairn::outcome::Claim;
    use cairn::protocol::encode_response;

    fn frame_of(response: &Response) -> Vec<u8> {
        let mut out = Vec::new();
        encode_response(response, &mut out).unwrap();
        out
    }

    #[test]
    fn a_move_is_32_bytes_with_the_hunt_offset() {
        let mut out = Vec::new();
        encode(1_000, &Op::Move { hunt: 3, player: 9, seq: 2, position: Position::new(5, 6) }, 77, &mut out);
        assert_eq!(out.len(), 32);
        let (header, request) = cairn::protocol::decode_request(&out).unwrap();
        assert_eq!(header.request_id, 77);
        assert_eq!(header.flags, 0, "moves are not quiet: every event is acknowledged");
        assert_eq!(
            request,
            Request::Event(Event::Move { hunt: 1_003, player: 9, seq: 2, position: Position::new(5, 6) })
        );
    }

    #[test]
    fn replies_become_acks() {
        let claim = Claim { treasure: 4, index: 1, capacity: 2, points: 60, score: 60, rank: 1 };
        let dug = frame_of(&Response::Reply { request_id: 5, body: ReplyBody::Dug { claim } });
        assert_eq!(parse(&dug).unwrap(), Some((dug.len(), Reply { id: Some(5), ack: Ack::Award { points: 60 } })));
        let refused = frame_of(&Response::Error { request_id: 6, code: 115, message: "already claimed".into() });
        assert_eq!(parse(&refused).unwrap().unwrap().1, Reply { id: Some(6), ack: Ack::Rejected(115) });
        assert_eq!(parse(&dug[..20]).unwrap(), None);
        let mut two = dug.clone();
        two.extend_from_slice(&refused);
        assert_eq!(parse(&two).unwrap().unwrap().0, dug.len());
    }

    #[test]
    fn each_connection_presents_the_token_the_server_gives_its_role_to() {
        let token = |text: &str| Some(Token::from(text.to_string()));
        let auth = "game-clients-token-0123";
        let admin = "admin-operators-token-4567";
        // (auth, admin) -> what the set-up connection and a load connection present.
        let check = |tokens: Tokens, setup: &str, load: &str| {
            let shown = |credential: Credential<'_>| String::from_utf8(credential.bytes().to_vec()).unwrap();
            assert_eq!(shown(tokens.setup()), setup);
            assert_eq!(shown(tokens.load()), load);
        };
        check(Tokens::new(None, None).unwrap(), "", "");
        check(Tokens::new(token(auth), None).unwrap(), auth, auth);
        check(Tokens::new(None, token(admin)).unwrap(), admin, "");
        check(Tokens::new(token(auth), token(admin)).unwrap(), admin, auth);
        // An empty variable is no token, as it is to `cairn serve`.
        check(Tokens::new(token(""), token("")).unwrap(), "", "");
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        let token = |text: &str| Some(Token::from(text.to_string()));
        let short = Tokens::new(token("fifteen-bytes!!"), None).unwrap_err().to_string();
        assert_eq!(short, "--auth-token (or CAIRN_AUTH_TOKEN): a token must be 16 to 256 bytes long, not 15");
        let long = "x".repeat(AUTH_TOKEN_SIZE_MAX + 1);
        let refused = Tokens::new(None, token(&long)).unwrap_err().to_string();
        assert!(refused.starts_with("--admin-token (or CAIRN_ADMIN_TOKEN): ") && !refused.contains("xx"), "{refused}");
        let same = "the-same-token-for-both";
        assert!(Tokens::new(token(same), token(same)).unwrap_err().to_string().contains("must differ"));
        let tokens = Tokens::new(token("game-clients-token-0123"), token("admin-operators-token-4567")).unwrap();
        let shown = format!("{tokens:?} {:?}", tokens.setup());
        assert!(!shown.contains("token-0123") && !shown.contains("token-4567"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn refusals_name_the_token_to_pass() {
        let auth = Token::from("game-clients-token-0123".to_string());
        let refused = |credential: Credential<'_>| credential.refused(13, "missing or wrong token").to_string();
        assert!(refused(Credential::Nothing).ends_with("pass --auth-token or CAIRN_AUTH_TOKEN"));
        assert!(
            refused(Credential::Auth(&auth)).starts_with("the server refused the auth token (error 13 unauthorized")
        );
        assert!(refused(Credential::Admin(&auth)).contains("--admin-token or CAIRN_ADMIN_TOKEN"));
        let admin = refusal("STATS", 14, "admin only").to_string();
        let expected = "the server refused STATS, an admin operation (error 14 admin_required: admin only)";
        assert!(admin.starts_with(expected), "{admin}");
        assert_eq!(refusal("JOIN", 101, "no such hunt").to_string(), "JOIN refused: error 101: no such hunt");
    }

    #[test]
    fn garbage_breaks_the_stream() {
        assert!(parse(&[3, 0, 0, 0, 0x97, 0, 0, 0, 1, 0, 0, 0]).is_err());
        assert!(parse_null(&[12, 0, 0, 0, 0x17, 0, 0, 0, 1, 0, 0, 0]).is_err());
        let ack = [12, 0, 0, 0, 0x97, 0, 0, 0, 9, 0, 0, 0];
        assert_eq!(parse_null(&ack).unwrap(), Some((12, Reply { id: Some(9), ack: Ack::Done })));
    }
}
