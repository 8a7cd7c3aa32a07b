//! The Rust client: one blocking TCP connection to a Cairn server, speaking the protocol
//! of `docs/protocol.md` through the codec in `crate::protocol`.
//!
//! [`Client`] sends one request at a time with a typed method per request
//! (`create_hunt`, `dig`, `top`, ...) and waits for its reply; a refusal comes back as
//! [`ClientError::Rejected`] with the wire code and the server's message. [`Pipeline`]
//! queues many requests, sends them in one write and collects their answers in request
//! order, matching replies by request id (replies for different hunts may overtake one
//! another). Pushes that arrive while the client waits for a reply are buffered, in
//! order, until [`Client::next_push`] hands them out.
//!
//! Quiet moves get no reply when they are accepted and claim nothing. The hunt's shard
//! answers events and SUBSCRIBEs for one hunt in order, so a [`Pipeline`] knows a quiet
//! move was applied silently as soon as a later one of those for the same hunt gets an
//! answer from that shard (a reply, or a refusal with a state-machine code or
//! `disk_full`). UNSUBSCRIBE replies and refusals such as `admin_required` come from the
//! connection's own shard and may overtake earlier requests, so they settle nothing.
//! When no player event or query for its hunt follows a quiet move in the batch, `flush`
//! appends a hidden barrier (TOP with count 0 for that hunt) whose answer settles it.
//! Every answer of a collected batch is therefore definite: a reply, a refusal, or
//! [`Answer::Quiet`].
//!
//! A server started with `--auth-token` or `--admin-token` wants a token in HELLO:
//! [`Client::connect_with_token`] sends it; a missing or wrong one fails the connect with
//! [`ClientError::ConnectionRefused`] (code 13, `unauthorized`), and an admin operation on
//! a connection without the admin token is refused with code 14 (`admin_required`).
//!
//! Everything is bounded in time: connecting, each write, and each call waiting for its
//! reply fail with [`ClientError::Timeout`] after the client's timeout, however many
//! pushes arrive meanwhile. A pipelined batch fails only if none of its answers arrives
//! for that long, so large batches are not cut short.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::constants::{FRAME_SIZE_MAX, PROTOCOL_VERSION};
use crate::event::{Event, HuntId, HuntSpec, PlayerId, Position, Sequence, TreasureId, TreasureSpec};
use crate::outcome::{Claim, Ranked, Rejection, Standing, Topic, TreasureState};
use crate::protocol::{
    decode_response, encode_request, next_frame, ErrorCode, ProtocolError, PushBody, ReplyBody, Request, Response,
    ServerHello, FLAG_MARK, FLAG_QUIET,
};

/// How long the client waits to connect, and for each reply it expects, by default.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// The name the client gives itself in HELLO unless told otherwise.
pub const CLIENT_NAME_DEFAULT: &str = "cairn-rust-client";

/// Bytes asked of the socket per read (64 KiB): one maximum frame.
const READ_CHUNK_SIZE: usize = FRAME_SIZE_MAX;

/// The request id of the handshake; later requests count up from the next one.
const HELLO_REQUEST_ID: u32 = 1;

/// Why a client call failed. Every message names the problem.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address (as given) that failed.
        address: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the client was doing.
        context: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Nothing arrived within the timeout.
    #[error("timed out after {waited:?} while {context}")]
    Timeout {
        /// What the client was waiting for.
        context: &'static str,
        /// How long it waited.
        waited: Duration,
    },
    /// The server closed the connection.
    #[error("the server closed the connection while {context}")]
    Closed {
        /// What the client was doing.
        context: &'static str,
    },
    /// The server sent a frame that does not decode: it does not speak this protocol, or
    /// the stream is corrupt.
    #[error("the server sent an undecodable frame: {0}")]
    Protocol(#[from] ProtocolError),
    /// The request could not be encoded (an empty topic mask, a flag the opcode does not
    /// allow); nothing was sent.
    #[error("invalid request, not sent: {0}")]
    InvalidRequest(ProtocolError),
    /// The server refused a request: a protocol error code (below 100) or a state-machine
    /// rejection (100 and up; see `Rejection::code`).
    #[error("the server refused the request with code {code} ({}): {message}", code_name(*.code))]
    Rejected {
        /// The wire code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// The server sent an ERROR about no request in particular (request id 0): it is
    /// refusing the connection.
    #[error("the server refused the connection with code {code} ({}): {message}", code_name(*.code))]
    ConnectionRefused {
        /// The wire code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// The server sent GOODBYE and is closing the connection.
    #[error("the server said goodbye with code {code} ({}): {message}", code_name(*.code))]
    Goodbye {
        /// The reason, a protocol error code.
        code: u16,
        /// The reason, in words.
        message: String,
    },
    /// A reply of the wrong kind arrived for a request.
    #[error("expected a {expected} reply but the server answered with a {received} reply")]
    UnexpectedReply {
        /// The reply the request calls for.
        expected: &'static str,
        /// The reply that came.
        received: &'static str,
    },
    /// The handshake agreed on a version this client does not speak.
    #[error("the server chose protocol version {version}, but this client speaks only {PROTOCOL_VERSION}")]
    Version {
        /// The version the server chose.
        version: u16,
    },
}

impl ClientError {
    /// The wire code of a refusal, a refused connection or a goodbye; `None` otherwise.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Rejected { code, .. }
            | ClientError::ConnectionRefused { code, .. }
            | ClientError::Goodbye { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The snake-case name of a wire error code (`docs/protocol.md` section 8), or
/// `"unknown"` for a code this build does not know.
pub fn code_name(code: u16) -> &'static str {
    if let Some(protocol) = ErrorCode::from_u16(code) {
        return protocol.name();
    }
    Rejection::name_of_code(code).unwrap_or("unknown")
}

/// A client's connection settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long to wait to connect, for each expected frame, and for each write.
    pub timeout: Duration,
    /// The name sent in HELLO, for the server's logs (at most 64 bytes).
    pub name: String,
}

impl Default for Options {
    fn default() -> Options {
        Options { timeout: TIMEOUT_DEFAULT, name: CLIENT_NAME_DEFAULT.to_owned() }
    }
}

/// Splits received bytes into decoded frames. Pure: no socket, so the tests can feed it.
#[derive(Debug, Default)]
struct FrameReader {
    buffer: Vec<u8>,
    /// Bytes at the front of `buffer` already handed out as frames.
    start: usize,
}

impl FrameReader {
    fn extend(&mut self, bytes: &[u8]) {
        // Compact once the consumed prefix dominates, so the buffer stays near one chunk.
        if self.start > 0 && self.start >= self.buffer.len() / 2 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, decoded, if one is buffered.
    fn next(&mut self) -> Result<Option<Response>, ProtocolError> {
        let rest = &self.buffer[self.start..];
        match next_frame(rest)? {
            Some(size) => {
                let response = decode_response(&rest[..size])?;
                self.start += size;
                Ok(Some(response))
            }
            None => Ok(None),
        }
    }

    /// Drops everything buffered, for a stream that can no longer be framed.
    fn clear(&mut self) {
        self.buffer.clear();
        self.start = 0;
    }

    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }
}

/// A connection to a Cairn server. See the module doc.
pub struct Client {
    stream: TcpStream,
    reader: FrameReader,
    chunk: Vec<u8>,
    pushes: VecDeque<PushBody>,
    hello: ServerHello,
    timeout: Duration,
    next_request_id: u32,
    /// Set once the server said GOODBYE or closed: nothing more will arrive.
    closed: bool,
    /// The GOODBYE the server sent, if it did: the reason the connection closed.
    goodbye: Option<(u16, String)>,
}

impl Client {
    /// Connects to `address` with the default [`Options`] and performs the handshake.
    pub fn connect(address: impl ToSocketAddrs + std::fmt::Debug) -> Result<Client, ClientError> {
        Client::connect_with(address, &Options::default())
    }

    /// Connects to `address` (trying each address it resolves to), sets TCP_NODELAY and
    /// the timeouts, and performs the handshake.
    pub fn connect_with(
        address: impl ToSocketAddrs + std::fmt::Debug,
        options: &Options,
    ) -> Result<Client, ClientError> {
        Client::connect_with_token(address, options, &[])
    }

    /// Like [`Client::connect_with`], presenting `token` in HELLO: the shared secret a
    /// server started with `--auth-token` (or `--admin-token`) requires; see
    /// `docs/security.md`. An empty token sends none. A wrong or missing token fails with
    /// [`ClientError::ConnectionRefused`] and code 13 (`unauthorized`).
    pub fn connect_with_token(
        address: impl ToSocketAddrs + std::fmt::Debug,
        options: &Options,
        token: &[u8],
    ) -> Result<Client, ClientError> {
        let described = format!("{address:?}");
        let connect_error = |source| ClientError::Connect { address: described.clone(), source };
        let addresses: Vec<SocketAddr> = address.to_socket_addrs().map_err(connect_error)?.collect();
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing");
        for socket_address in addresses {
            match TcpStream::connect_timeout(&socket_address, options.timeout) {
                Ok(stream) => {
                    return Client::handshake(stream, options, token).map_err(|error| match error {
                        ClientError::Io { source, .. } => connect_error(source),
                        other => other,
                    })
                }
                Err(error) => last_error = error,
            }
        }
        Err(connect_error(last_error))
    }

    /// Performs the handshake on a stream the caller connected (to choose its socket
    /// options, say); sets TCP_NODELAY and the timeouts like [`Client::connect_with`].
    pub fn from_stream(stream: TcpStream, options: &Options) -> Result<Client, ClientError> {
        Client::handshake(stream, options, &[])
    }

    /// Like [`Client::from_stream`], presenting `token` in HELLO (see
    /// [`Client::connect_with_token`]).
    pub fn from_stream_with_token(stream: TcpStream, options: &Options, token: &[u8]) -> Result<Client, ClientError> {
        Client::handshake(stream, options, token)
    }

    fn handshake(stream: TcpStream, options: &Options, token: &[u8]) -> Result<Client, ClientError> {
        let io_error = |source| ClientError::Io { context: "setting up the socket", source };
        stream.set_nodelay(true).map_err(io_error)?;
        stream.set_read_timeout(Some(options.timeout)).map_err(io_error)?;
        stream.set_write_timeout(Some(options.timeout)).map_err(io_error)?;
        let mut client = Client {
            stream,
            reader: FrameReader::default(),
            chunk: vec![0; READ_CHUNK_SIZE],
            pushes: VecDeque::new(),
            hello: ServerHello::new(0),
            timeout: options.timeout,
            next_request_id: HELLO_REQUEST_ID + 1,
            closed: false,
            goodbye: None,
        };
        let version = PROTOCOL_VERSION;
        let hello = Request::Hello { version_min: version, version_max: version, name: &options.name, token };
        let mut frame = Vec::new();
        encode_request(HELLO_REQUEST_ID, 0, &hello, &mut frame).map_err(ClientError::InvalidRequest)?;
        client.write(&frame)?;
        // A refused HELLO (a wrong token, no common version) refuses the connection.
        let reply = client.wait_for(HELLO_REQUEST_ID, "waiting for the HELLO reply").map_err(|error| match error {
            ClientError::Rejected { code, message } => ClientError::ConnectionRefused { code, message },
            other => other,
        })?;
        match reply {
            ReplyBody::Hello(hello) if hello.version == PROTOCOL_VERSION => client.hello = hello,
            ReplyBody::Hello(hello) => return Err(ClientError::Version { version: hello.version }),
            other => return Err(unexpected("HELLO", &other)),
        }
        Ok(client)
    }

    /// What the server said in its HELLO reply.
    pub fn server_hello(&self) -> &ServerHello {
        &self.hello
    }

    /// The protocol version agreed on.
    pub fn version(&self) -> u16 {
        self.hello.version
    }

    /// Shards (threads) the server runs hunts on.
    pub fn shard_count(&self) -> usize {
        self.hello.shard_count as usize
    }

    /// The timeout for connecting, for each write, for each call's reply, and for each
    /// wait between two answers of a pipelined batch.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the timeout.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let io_error = |source| ClientError::Io { context: "setting the socket timeouts", source };
        self.stream.set_write_timeout(Some(timeout)).map_err(io_error)?;
        self.timeout = timeout;
        Ok(())
    }

    /// The server's address.
    pub fn peer_addr(&self) -> Result<SocketAddr, ClientError> {
        self.stream.peer_addr().map_err(|source| ClientError::Io { context: "reading the peer address", source })
    }

    fn take_request_id(&mut self) -> u32 {
        let id = self.next_request_id;
        // 0 is the server's "no request in particular"; skip it on wrap-around.
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        id
    }

    // -----------------------------------------------------------------------------------
    // One request at a time.

    /// Sends any request and waits for its reply; the typed methods below call this.
    pub fn send(&mut self, request: &Request) -> Result<ReplyBody, ClientError> {
        let id = self.take_request_id();
        let mut frame = Vec::new();
        encode_request(id, 0, request, &mut frame).map_err(ClientError::InvalidRequest)?;
        self.write(&frame)?;
        self.wait_for(id, "waiting for a reply")
    }

    /// Sends one state-machine event and waits for its reply.
    pub fn request(&mut self, event: &Event) -> Result<ReplyBody, ClientError> {
        self.send(&Request::Event(*event))
    }

    /// PING: a round trip.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        match self.send(&Request::Ping)? {
            ReplyBody::Pong => Ok(()),
            other => Err(unexpected("PING", &other)),
        }
    }

    /// STATS: the server's statistics, a JSON document (see the server's docs).
    pub fn stats(&mut self) -> Result<String, ClientError> {
        match self.send(&Request::Stats)? {
            ReplyBody::Stats { json } => Ok(json),
            other => Err(unexpected("STATS", &other)),
        }
    }

    /// STATS with the MARK flag: the document, then a new allocation mark, so the next
    /// STATS reports allocations per event since this one.
    pub fn stats_and_mark(&mut self) -> Result<String, ClientError> {
        let id = self.take_request_id();
        let mut frame = Vec::new();
        encode_request(id, FLAG_MARK, &Request::Stats, &mut frame).map_err(ClientError::InvalidRequest)?;
        self.write(&frame)?;
        match self.wait_for(id, "waiting for a reply")? {
            ReplyBody::Stats { json } => Ok(json),
            other => Err(unexpected("STATS", &other)),
        }
    }

    /// Follows a hunt's topics (a mask of `Topic::bit`s). Returns the last sequence
    /// number issued on each topic, indexed by `Topic as usize`.
    pub fn subscribe(&mut self, hunt: HuntId, topics: u8) -> Result<[u64; Topic::COUNT], ClientError> {
        match self.send(&Request::Subscribe { hunt, topics })? {
            ReplyBody::Subscribed { sequences } => Ok(sequences),
            other => Err(unexpected("SUBSCRIBE", &other)),
        }
    }

    /// Stops following a hunt.
    pub fn unsubscribe(&mut self, hunt: HuntId) -> Result<(), ClientError> {
        match self.send(&Request::Unsubscribe { hunt })? {
            ReplyBody::Unsubscribed => Ok(()),
            other => Err(unexpected("UNSUBSCRIBE", &other)),
        }
    }

    /// Creates a hunt.
    pub fn create_hunt(&mut self, hunt: HuntId, spec: &HuntSpec) -> Result<(), ClientError> {
        self.expect_empty(&Event::CreateHunt { hunt, spec: *spec }, "CREATE_HUNT")
    }

    /// Ends a hunt now.
    pub fn end_hunt(&mut self, hunt: HuntId) -> Result<(), ClientError> {
        self.expect_empty(&Event::EndHunt { hunt }, "END_HUNT")
    }

    /// Deletes a hunt and everything in it.
    pub fn delete_hunt(&mut self, hunt: HuntId) -> Result<(), ClientError> {
        self.expect_empty(&Event::DeleteHunt { hunt }, "DELETE_HUNT")
    }

    /// Places a treasure.
    pub fn place_treasure(&mut self, hunt: HuntId, treasure: &TreasureSpec) -> Result<(), ClientError> {
        self.expect_empty(&Event::PlaceTreasure { hunt, treasure: *treasure }, "PLACE_TREASURE")
    }

    /// Removes a treasure; claims already awarded stay.
    pub fn remove_treasure(&mut self, hunt: HuntId, treasure: TreasureId) -> Result<(), ClientError> {
        self.expect_empty(&Event::RemoveTreasure { hunt, treasure }, "REMOVE_TREASURE")
    }

    /// A player joins (or rejoins) a hunt. Returns their score and rank.
    pub fn join(
        &mut self,
        hunt: HuntId,
        player: PlayerId,
        seq: Sequence,
        position: Position,
    ) -> Result<(i64, u32), ClientError> {
        match self.request(&Event::Join { hunt, player, seq, position })? {
            ReplyBody::Joined { score, rank } => Ok((score, rank)),
            other => Err(unexpected("JOIN", &other)),
        }
    }

    /// A player leaves a hunt.
    pub fn leave(&mut self, hunt: HuntId, player: PlayerId, seq: Sequence) -> Result<(), ClientError> {
        self.expect_empty(&Event::Leave { hunt, player, seq }, "LEAVE")
    }

    /// A player moves. Returns the claims the move made (none unless the hunt
    /// auto-discovers). Sent without the QUIET flag; quiet moves go through a
    /// [`Pipeline`].
    pub fn move_player(
        &mut self,
        hunt: HuntId,
        player: PlayerId,
        seq: Sequence,
        position: Position,
    ) -> Result<Vec<Claim>, ClientError> {
        match self.request(&Event::Move { hunt, player, seq, position })? {
            ReplyBody::Moved { claims } => Ok(claims),
            other => Err(unexpected("MOVE", &other)),
        }
    }

    /// A player digs for a treasure at a position. Returns the award.
    pub fn dig(
        &mut self,
        hunt: HuntId,
        player: PlayerId,
        seq: Sequence,
        treasure: TreasureId,
        position: Position,
    ) -> Result<Claim, ClientError> {
        match self.request(&Event::Dig { hunt, player, seq, treasure, position })? {
            ReplyBody::Dug { claim } => Ok(claim),
            other => Err(unexpected("DIG", &other)),
        }
    }

    /// Adds `delta` to a player's score. Returns the new score and rank.
    pub fn adjust_score(
        &mut self,
        hunt: HuntId,
        player: PlayerId,
        seq: Sequence,
        delta: i32,
    ) -> Result<(i64, u32), ClientError> {
        match self.request(&Event::AdjustScore { hunt, player, seq, delta })? {
            ReplyBody::Adjusted { score, rank } => Ok((score, rank)),
            other => Err(unexpected("ADJUST_SCORE", &other)),
        }
    }

    /// The first `count` leaderboard lines. Returns the players on the board in all, and
    /// the lines, best first.
    pub fn top(&mut self, hunt: HuntId, count: u32) -> Result<(u32, Vec<Ranked>), ClientError> {
        match self.request(&Event::Top { hunt, count })? {
            ReplyBody::Top { total, entries } => Ok((total, entries)),
            other => Err(unexpected("TOP", &other)),
        }
    }

    /// A player's standing.
    pub fn rank(&mut self, hunt: HuntId, player: PlayerId) -> Result<Standing, ClientError> {
        match self.request(&Event::Rank { hunt, player })? {
            ReplyBody::Standing(standing) => Ok(standing),
            other => Err(unexpected("RANK", &other)),
        }
    }

    /// The lines around a player, `radius` on each side. Returns the players on the
    /// board in all, and the lines, best first.
    pub fn around(&mut self, hunt: HuntId, player: PlayerId, radius: u32) -> Result<(u32, Vec<Ranked>), ClientError> {
        match self.request(&Event::Around { hunt, player, radius })? {
            ReplyBody::Around { total, entries } => Ok((total, entries)),
            other => Err(unexpected("AROUND", &other)),
        }
    }

    /// Distance from a player to the nearest treasure they can still claim, if any.
    pub fn hint(&mut self, hunt: HuntId, player: PlayerId) -> Result<Option<u64>, ClientError> {
        match self.request(&Event::Hint { hunt, player })? {
            ReplyBody::Hint { distance } => Ok(distance),
            other => Err(unexpected("HINT", &other)),
        }
    }

    /// How often a treasure has been claimed, of how many.
    pub fn treasure_info(&mut self, hunt: HuntId, treasure: TreasureId) -> Result<TreasureState, ClientError> {
        match self.request(&Event::TreasureInfo { hunt, treasure })? {
            ReplyBody::Treasure(state) => Ok(state),
            other => Err(unexpected("TREASURE_INFO", &other)),
        }
    }

    fn expect_empty(&mut self, event: &Event, name: &'static str) -> Result<(), ClientError> {
        let reply = self.request(event)?;
        if reply.outcome().is_some() && reply.opcode() == crate::protocol::Opcode::for_event(event.kind()) {
            Ok(())
        } else {
            Err(unexpected(name, &reply))
        }
    }

    // -----------------------------------------------------------------------------------
    // Pushes.

    /// The next push: a buffered one if any, else the next to arrive within `timeout`.
    /// Returns `Ok(None)` if none arrives in time. A GOODBYE is handed out like any
    /// push; once the server has closed, this returns [`ClientError::Goodbye`] (if it
    /// said goodbye) or [`ClientError::Closed`].
    pub fn next_push(&mut self, timeout: Duration) -> Result<Option<PushBody>, ClientError> {
        // A timeout too long to add to the clock (`Duration::MAX`, say) has no deadline.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(push) = self.pushes.pop_front() {
                return Ok(Some(push));
            }
            let remaining = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => timeout,
            };
            if remaining.is_zero() {
                return Ok(None);
            }
            match self.read_response(Instant::now(), remaining, "waiting for a push") {
                Ok(Response::Push(push)) => return Ok(Some(push)),
                // A reply nobody waits for answers a request abandoned after a timeout.
                Ok(Response::Reply { .. }) | Ok(Response::Error { .. }) => {}
                Err(ClientError::Timeout { .. }) => return Ok(None),
                Err(error) => return Err(error),
            }
        }
    }

    /// Pushes received and not yet handed out.
    pub fn buffered_pushes(&self) -> usize {
        self.pushes.len()
    }

    // -----------------------------------------------------------------------------------
    // Pipelining.

    /// Starts a batch of pipelined requests on this connection.
    pub fn pipeline(&mut self) -> Pipeline<'_> {
        Pipeline { client: self, frames: Vec::new(), entries: Vec::new(), hunts_last_quiet: HashMap::new() }
    }

    // -----------------------------------------------------------------------------------
    // The socket.

    fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if self.closed {
            return Err(self.closed_error("writing requests"));
        }
        self.stream.write_all(bytes).map_err(|source| match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                ClientError::Timeout { context: "writing requests", waited: self.timeout }
            }
            _ => ClientError::Io { context: "writing requests", source },
        })
    }

    /// Reads until the reply to request `id` arrives, buffering pushes and discarding
    /// replies to requests abandoned earlier.
    fn wait_for(&mut self, id: u32, context: &'static str) -> Result<ReplyBody, ClientError> {
        // The timeout runs from the call, so pushes arriving meanwhile do not extend it.
        let since = Instant::now();
        loop {
            match self.read_response(since, self.timeout, context)? {
                Response::Reply { request_id, body } if request_id == id => return Ok(body),
                Response::Error { request_id, code, message } if request_id == id => {
                    return Err(ClientError::Rejected { code, message })
                }
                Response::Push(push) => self.pushes.push_back(push),
                // A reply nobody waits for answers a request abandoned after a timeout.
                Response::Reply { .. } | Response::Error { .. } => {}
            }
        }
    }

    /// The next frame, waiting until `timeout` after `since` at most. A GOODBYE is
    /// remembered as the reason for the close to come; an ERROR with request id 0 is a
    /// refused connection.
    fn read_response(
        &mut self,
        since: Instant,
        timeout: Duration,
        context: &'static str,
    ) -> Result<Response, ClientError> {
        loop {
            let next = match self.reader.next() {
                Ok(next) => next,
                Err(error) => return Err(self.undecodable(error)),
            };
            if let Some(response) = next {
                match &response {
                    Response::Push(PushBody::Goodbye { code, message }) => {
                        self.closed = true;
                        self.goodbye = Some((*code, message.clone()));
                    }
                    Response::Error { request_id: 0, code, message } => {
                        self.closed = true;
                        return Err(ClientError::ConnectionRefused { code: *code, message: message.clone() });
                    }
                    _ => {}
                }
                return Ok(response);
            }
            let elapsed = since.elapsed();
            if elapsed >= timeout {
                return Err(ClientError::Timeout { context, waited: elapsed });
            }
            self.fill(timeout - elapsed, context)?;
        }
    }

    /// One read from the socket into the frame reader.
    fn fill(&mut self, timeout: Duration, context: &'static str) -> Result<(), ClientError> {
        // A zero timeout would mean "block forever" to the socket.
        let timeout = timeout.max(Duration::from_millis(1));
        let io_error = |source| ClientError::Io { context, source };
        self.stream.set_read_timeout(Some(timeout)).map_err(io_error)?;
        match self.stream.read(&mut self.chunk) {
            Ok(0) => Err(self.closed_error(context)),
            Ok(size) => {
                self.reader.extend(&self.chunk[..size]);
                Ok(())
            }
            // Why: the socket's read timeout expired; the caller's loop decides.
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(()),
            // Why: a signal interrupted the read; nothing was lost, read again.
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(error) if matches!(error.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => {
                Err(self.closed_error(context))
            }
            Err(source) => Err(ClientError::Io { context, source }),
        }
    }

    /// The error for a connection the server closed (or reset): its GOODBYE's reason
    /// if it sent one, which says more than "closed" does.
    fn closed_error(&mut self, context: &'static str) -> ClientError {
        self.closed = true;
        match &self.goodbye {
            Some((code, message)) => ClientError::Goodbye { code: *code, message: message.clone() },
            None => ClientError::Closed { context },
        }
    }

    /// The server sent a frame that does not decode. Nothing after it can be framed
    /// reliably, so the connection is shut down and dropped: this call reports why, and
    /// later calls report a closed connection instead of the same frame again.
    fn undecodable(&mut self, error: ProtocolError) -> ClientError {
        self.closed = true;
        self.reader.clear();
        // Why: the socket may already be gone; the connection ends either way.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        ClientError::Protocol(error)
    }

    /// Returns true if and only if the server has said GOODBYE or closed the connection,
    /// or sent a frame that does not decode (the client then drops the connection).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

fn unexpected(expected: &'static str, received: &ReplyBody) -> ClientError {
    ClientError::UnexpectedReply { expected, received: received.opcode().name() }
}

/// The answer to one pipelined request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The reply.
    Reply(ReplyBody),
    /// The server refused the request (an ERROR frame with its id).
    Refused {
        /// The wire code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// A quiet move that was applied and claimed nothing, so it got no reply.
    Quiet,
}

impl Answer {
    /// The reply, or the refusal as a [`ClientError::Rejected`]; a quiet move's silence
    /// is `Ok(None)`.
    pub fn into_result(self) -> Result<Option<ReplyBody>, ClientError> {
        match self {
            Answer::Reply(body) => Ok(Some(body)),
            Answer::Refused { code, message } => Err(ClientError::Rejected { code, message }),
            Answer::Quiet => Ok(None),
        }
    }
}

/// One queued request of a [`Pipeline`].
#[derive(Debug)]
struct Entry {
    request_id: u32,
    /// The hunt whose order this request's answer follows, if any: events and SUBSCRIBE,
    /// which the hunt's owning shard answers. Not UNSUBSCRIBE: the connection's own shard
    /// answers it at once, ahead of earlier requests another shard still holds.
    hunt: Option<HuntId>,
    quiet: bool,
    /// Hidden barriers are not returned to the caller.
    barrier: bool,
    answer: Option<Answer>,
}

/// Matches answers to a batch's entries. Pure, so the tests can drive it.
#[derive(Debug, Default)]
struct Matcher {
    /// Entry index by request id, for entries not yet answered.
    waiting: HashMap<u32, usize>,
    /// Per hunt, the quiet moves not yet settled, by entry index (ascending).
    quiet: HashMap<HuntId, VecDeque<usize>>,
    /// Entries not yet answered.
    open: usize,
}

impl Matcher {
    fn new(entries: &[Entry]) -> Matcher {
        let mut matcher = Matcher::default();
        for (index, entry) in entries.iter().enumerate() {
            matcher.waiting.insert(entry.request_id, index);
            if entry.quiet {
                let hunt = entry.hunt.expect("a quiet request is a move, which has a hunt");
                matcher.quiet.entry(hunt).or_default().push_back(index);
            }
        }
        matcher.open = entries.len();
        matcher
    }

    /// Records the answer to `request_id`; returns false if no entry waits for it (a
    /// stale reply from an abandoned request).
    fn answer(&mut self, entries: &mut [Entry], request_id: u32, answer: Answer) -> bool {
        let Some(index) = self.waiting.remove(&request_id) else {
            return false;
        };
        assert!(entries[index].answer.is_none());
        entries[index].answer = Some(answer);
        self.open -= 1;
        let in_order = match &entries[index].answer {
            Some(Answer::Refused { code, .. }) => in_hunt_order(*code),
            _ => true,
        };
        if let (Some(hunt), true) = (entries[index].hunt, in_order) {
            // Requests for one hunt are answered in order: every quiet move of this hunt
            // sent before this request, still unanswered, was applied without a reply.
            if let Some(queue) = self.quiet.get_mut(&hunt) {
                while let Some(&earlier) = queue.front() {
                    if earlier > index {
                        break;
                    }
                    queue.pop_front();
                    if entries[earlier].answer.is_none() {
                        entries[earlier].answer = Some(Answer::Quiet);
                        self.waiting.remove(&entries[earlier].request_id);
                        self.open -= 1;
                    }
                }
            }
        }
        true
    }

    fn is_done(&self) -> bool {
        self.open == 0
    }
}

/// Returns true if and only if a refusal with this code comes from the hunt's owning
/// shard, in the hunt's order: a state-machine rejection (100 and up) or `disk_full`.
/// Other protocol errors (`admin_required`, `too_many_subscriptions`, `reserved_bits`)
/// are sent by the connection's own shard at once and may overtake earlier requests.
fn in_hunt_order(code: u16) -> bool {
    code >= 100 || code == ErrorCode::DiskFull.to_u16()
}

/// A batch of pipelined requests: [`push`](Pipeline::push) queues, [`flush`](Pipeline::flush)
/// sends them in one write, [`collect`](Pipeline::collect) reads until every request is
/// answered and returns the answers in request order.
///
/// Between `flush` and `collect` nothing reads the socket, so the server may stop
/// reading the connection once its replies pile up (about 1 MiB of them): keep a
/// flushed batch to tens of thousands of requests, or use [`execute`](Pipeline::execute),
/// which writes and reads at once and takes batches of any size.
pub struct Pipeline<'c> {
    client: &'c mut Client,
    frames: Vec<u8>,
    entries: Vec<Entry>,
    /// Hunts whose last queued request is a quiet move: they need a barrier.
    hunts_last_quiet: HashMap<HuntId, bool>,
}

impl Pipeline<'_> {
    /// Queues an event. Returns its request id.
    pub fn push(&mut self, event: &Event) -> Result<u32, ClientError> {
        self.push_request(&Request::Event(*event), false)
    }

    /// Queues a MOVE with the QUIET flag: no reply unless it claims or is refused.
    pub fn push_quiet_move(
        &mut self,
        hunt: HuntId,
        player: PlayerId,
        seq: Sequence,
        position: Position,
    ) -> Result<u32, ClientError> {
        self.push_request(&Request::Event(Event::Move { hunt, player, seq, position }), true)
    }

    /// Queues any request (HELLO excepted: the connection already shook hands). `quiet`
    /// may be set on moves only.
    pub fn push_request(&mut self, request: &Request, quiet: bool) -> Result<u32, ClientError> {
        self.queue(request, quiet, false)
    }

    fn queue(&mut self, request: &Request, quiet: bool, barrier: bool) -> Result<u32, ClientError> {
        let hunt = match request {
            Request::Event(event) => Some(event.hunt()),
            Request::Subscribe { hunt, .. } => Some(*hunt),
            Request::Hello { .. } | Request::Ping | Request::Stats | Request::Unsubscribe { .. } => None,
        };
        let request_id = self.client.take_request_id();
        let flags = if quiet { FLAG_QUIET } else { 0 };
        encode_request(request_id, flags, request, &mut self.frames).map_err(ClientError::InvalidRequest)?;
        if let Some(hunt) = hunt {
            // Only a request whose answer surely comes from the hunt's owner, in order,
            // settles the quiet moves before it: a player event or query. SUBSCRIBE may be
            // refused at once (too_many_subscriptions) and an admin event too
            // (admin_required), so after those the hunt still needs a barrier.
            if quiet {
                self.hunts_last_quiet.insert(hunt, true);
            } else if matches!(request, Request::Event(_)) && !crate::server::auth::requires_admin(request) {
                self.hunts_last_quiet.insert(hunt, false);
            }
        }
        self.entries.push(Entry { request_id, hunt, quiet, barrier, answer: None });
        Ok(request_id)
    }

    /// Requests queued (not counting barriers).
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|entry| !entry.barrier).count()
    }

    /// Returns true if and only if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a barrier for every hunt whose last request is a quiet move.
    fn add_barriers(&mut self) -> Result<(), ClientError> {
        let mut hunts: Vec<HuntId> =
            self.hunts_last_quiet.iter().filter(|(_, &quiet)| quiet).map(|(&hunt, _)| hunt).collect();
        hunts.sort_unstable();
        for hunt in hunts {
            // TOP with count 0 changes nothing and is answered (or refused) in order.
            self.queue(&Request::Event(Event::Top { hunt, count: 0 }), false, true)?;
        }
        Ok(())
    }

    /// Sends every queued request (and the barriers) in one write.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.add_barriers()?;
        let frames = std::mem::take(&mut self.frames);
        let result = self.client.write(&frames);
        self.frames = frames;
        self.frames.clear();
        result
    }

    /// Reads until every flushed request is answered; returns the answers in the order
    /// the requests were queued. Fails if none of the batch's answers arrives for the
    /// client's timeout (pushes arriving meanwhile are buffered, and do not count).
    pub fn collect(self) -> Result<Vec<Answer>, ClientError> {
        assert!(self.frames.is_empty(), "collect needs the batch flushed first");
        let Pipeline { client, mut entries, .. } = self;
        let mut matcher = Matcher::new(&entries);
        // The timeout runs from the batch's last answer: a large batch is not cut short while
        // its answers keep coming, and pushes (or replies to abandoned requests) do not count.
        let mut since = Instant::now();
        while !matcher.is_done() {
            match client.read_response(since, client.timeout, "collecting pipelined replies")? {
                Response::Reply { request_id, body } => {
                    if matcher.answer(&mut entries, request_id, Answer::Reply(body)) {
                        since = Instant::now();
                    }
                }
                Response::Error { request_id, code, message } => {
                    if matcher.answer(&mut entries, request_id, Answer::Refused { code, message }) {
                        since = Instant::now();
                    }
                }
                Response::Push(push) => client.pushes.push_back(push),
            }
        }
        let answers = entries.into_iter().filter(|entry| !entry.barrier);
        Ok(answers.map(|entry| entry.answer.expect("the matcher saw every entry answered")).collect())
    }

    /// Flushes and collects at once: a helper thread writes the batch (one write) while
    /// this thread reads the answers, so batches of any size go through.
    pub fn execute(mut self) -> Result<Vec<Answer>, ClientError> {
        self.add_barriers()?;
        let frames = std::mem::take(&mut self.frames);
        let mut writer = self
            .client
            .stream
            .try_clone()
            .map_err(|source| ClientError::Io { context: "cloning the socket for writing", source })?;
        std::thread::scope(|scope| {
            let written = scope.spawn(move || writer.write_all(&frames));
            let answers = self.collect();
            let written = written.join().expect("the writer thread does not panic");
            match (answers, written) {
                (Ok(answers), _) => Ok(answers),
                (Err(error), Ok(())) => Err(error),
                // The write failure is the root cause of the failed collection.
                (Err(_), Err(source)) => Err(ClientError::Io { context: "writing requests", source }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode_response;

    fn frames(responses: &[Response]) -> Vec<u8> {
        let mut out = Vec::new();
        for response in responses {
            encode_response(response, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn the_frame_reader_splits_frames_fed_one_byte_at_a_time() {
        let expected = vec![
            Response::Reply { request_id: 3, body: ReplyBody::Pong },
            Response::Error { request_id: 4, code: 114, message: "gone".into() },
            Response::Push(PushBody::Goodbye { code: 11, message: "slow".into() }),
        ];
        let bytes = frames(&expected);
        let mut reader = FrameReader::default();
        let mut decoded = Vec::new();
        for byte in bytes {
            reader.extend(&[byte]);
            while let Some(response) = reader.next().unwrap() {
                decoded.push(response);
            }
        }
        assert_eq!(decoded, expected);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn the_frame_reader_refuses_an_oversize_header_at_once() {
        let mut reader = FrameReader::default();
        reader.extend(&(FRAME_SIZE_MAX as u32 + 1).to_le_bytes());
        assert_eq!(reader.next(), Err(ProtocolError::FrameTooLarge { length: FRAME_SIZE_MAX as u64 + 1 }));
    }

    fn entry(request_id: u32, hunt: HuntId, quiet: bool) -> Entry {
        Entry { request_id, hunt: Some(hunt), quiet, barrier: false, answer: None }
    }

    fn check(entries: &mut [Entry], arrivals: &[(u32, Answer)], expected: &[Option<Answer>]) {
        let mut matcher = Matcher::new(entries);
        for (request_id, answer) in arrivals {
            assert!(matcher.answer(entries, *request_id, answer.clone()));
        }
        let answers: Vec<Option<Answer>> = entries.iter().map(|entry| entry.answer.clone()).collect();
        assert_eq!(answers, expected);
        assert_eq!(matcher.is_done(), expected.iter().all(Option::is_some));
    }

    #[test]
    fn replies_are_matched_by_id_whatever_their_order() {
        let pong = || Answer::Reply(ReplyBody::Pong);
        let refused = || Answer::Refused { code: 101, message: "no hunt".into() };
        let mut entries = [entry(10, 1, false), entry(11, 2, false), entry(12, 1, false)];
        check(
            &mut entries,
            &[(11, refused()), (10, pong()), (12, pong())],
            &[Some(pong()), Some(refused()), Some(pong())],
        );
    }

    #[test]
    fn a_later_answer_for_the_same_hunt_settles_earlier_quiet_moves() {
        let moved = || Answer::Reply(ReplyBody::Moved { claims: vec![] });
        let top = || Answer::Reply(ReplyBody::Top { total: 0, entries: vec![] });
        // Quiet moves on hunts 1 and 2; a reply for hunt 1 settles only hunt 1's.
        let mut entries =
            [entry(1, 1, true), entry(2, 2, true), entry(3, 1, true), entry(4, 1, false), entry(5, 2, true)];
        check(&mut entries, &[(4, top())], &[Some(Answer::Quiet), None, Some(Answer::Quiet), Some(top()), None]);
        // A quiet move that did claim is answered, and settles the quiet ones before it.
        let mut entries = [entry(1, 2, true), entry(2, 2, true), entry(3, 2, false)];
        check(&mut entries, &[(2, moved()), (3, top())], &[Some(Answer::Quiet), Some(moved()), Some(top())]);
    }

    #[test]
    fn stale_replies_are_ignored() {
        let mut entries = [entry(7, 1, false)];
        let mut matcher = Matcher::new(&entries);
        assert!(!matcher.answer(&mut entries, 6, Answer::Quiet));
        assert!(!matcher.is_done());
    }

    /// Reads request frames from `stream` until `count` have arrived, decoded into
    /// (request id, flags, request); HELLO's name is dropped so the requests own nothing.
    fn read_requests(stream: &mut TcpStream, buffer: &mut Vec<u8>, count: usize) -> Vec<(u32, u8, Request<'static>)> {
        let mut chunk = [0u8; 4096];
        let mut requests = Vec::new();
        while requests.len() < count {
            while let Some(size) = next_frame(buffer).unwrap() {
                let frame: Vec<u8> = buffer.drain(..size).collect();
                let (header, request) = crate::protocol::decode_request(&frame).unwrap();
                let request = match request {
                    Request::Hello { version_min, version_max, .. } => {
                        Request::Hello { version_min, version_max, name: "", token: &[] }
                    }
                    Request::Ping => Request::Ping,
                    Request::Stats => Request::Stats,
                    Request::Subscribe { hunt, topics } => Request::Subscribe { hunt, topics },
                    Request::Unsubscribe { hunt } => Request::Unsubscribe { hunt },
                    Request::Event(event) => Request::Event(event),
                };
                requests.push((header.request_id, header.flags, request));
            }
            if requests.len() >= count {
                break;
            }
            let size = stream.read(&mut chunk).unwrap();
            assert!(size > 0, "the client closed early");
            buffer.extend_from_slice(&chunk[..size]);
        }
        requests
    }

    /// Accepts one connection on `listener` and answers its HELLO as a server of `shards`
    /// shards; returns the stream and the bytes read past the HELLO.
    fn accept_greeted(listener: &std::net::TcpListener, shards: u16) -> (TcpStream, Vec<u8>) {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buffer = Vec::new();
        let hello = read_requests(&mut stream, &mut buffer, 1);
        assert!(matches!(hello[0].2, Request::Hello { version_min: 1, version_max: 1, .. }));
        let reply = Response::Reply { request_id: hello[0].0, body: ReplyBody::Hello(ServerHello::new(shards)) };
        stream.write_all(&frames(&[reply])).unwrap();
        (stream, buffer)
    }

    /// A fake server on loopback: answers HELLO, then hands the next `count` request
    /// frames to `serve` and sends back what it returns, in that order.
    fn fake_server(
        serve: impl FnOnce(Vec<(u32, u8, Request<'static>)>) -> Vec<Response> + Send + 'static,
        count: usize,
    ) -> SocketAddr {
        fake_server_bytes(move |requests| frames(&serve(requests)), count)
    }

    /// Like [`fake_server`], but `serve` returns the bytes to send, which need not be
    /// frames a real server would send.
    fn fake_server_bytes(
        serve: impl FnOnce(Vec<(u32, u8, Request<'static>)>) -> Vec<u8> + Send + 'static,
        count: usize,
    ) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, mut buffer) = accept_greeted(&listener, 3);
            let requests = read_requests(&mut stream, &mut buffer, count);
            stream.write_all(&serve(requests)).unwrap();
            // Hold the connection open until the client closes it.
            let _ = stream.read(&mut [0u8; 16]);
        });
        address
    }

    /// A fake server on loopback that answers HELLO, then reads `count` requests, answers
    /// the first `answered` of them, and then only pushes a notice every 20 ms for
    /// `pushing`: the replies still owed never come.
    fn fake_server_pushing_instead_of_replying(count: usize, answered: usize, pushing: Duration) -> SocketAddr {
        use crate::outcome::{Notice, NoticeKind};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, mut buffer) = accept_greeted(&listener, 1);
            let requests = read_requests(&mut stream, &mut buffer, count);
            let replies: Vec<Response> = requests[..answered]
                .iter()
                .map(|(id, _, _)| Response::Reply { request_id: *id, body: ReplyBody::Pong })
                .collect();
            stream.write_all(&frames(&replies)).unwrap();
            let started = Instant::now();
            let mut seq = 0;
            while started.elapsed() < pushing {
                seq += 1;
                let notice = Notice {
                    hunt: 1,
                    seq,
                    kind: NoticeKind::TopChanged { player: 1, score: 5, rank_before: 0, rank_after: 1 },
                };
                if stream.write_all(&frames(&[Response::Push(PushBody::Notice(notice))])).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = stream.read(&mut [0u8; 16]);
        });
        address
    }

    #[test]
    fn a_call_times_out_on_its_reply_however_many_pushes_arrive_meanwhile() {
        let address = fake_server_pushing_instead_of_replying(1, 0, Duration::from_secs(8));
        let options = Options { timeout: Duration::from_millis(300), ..Options::default() };
        let mut client = Client::connect_with(address, &options).unwrap();
        let started = Instant::now();
        let error = client.ping().unwrap_err();
        let waited = started.elapsed();
        assert!(matches!(error, ClientError::Timeout { .. }), "{error}");
        // The pushes go on for 8 s; a timeout restarted by each of them would end only then.
        assert!(waited < Duration::from_secs(4), "the 300 ms timeout took {waited:?}");
        assert!(client.buffered_pushes() > 0, "the pushes that arrived meanwhile are kept");
    }

    #[test]
    fn a_batch_times_out_when_its_answers_stop_however_many_pushes_arrive() {
        let address = fake_server_pushing_instead_of_replying(2, 1, Duration::from_secs(8));
        let options = Options { timeout: Duration::from_millis(300), ..Options::default() };
        let mut client = Client::connect_with(address, &options).unwrap();
        let mut pipeline = client.pipeline();
        pipeline.push_request(&Request::Ping, false).unwrap();
        pipeline.push_request(&Request::Ping, false).unwrap();
        pipeline.flush().unwrap();
        let started = Instant::now();
        let error = pipeline.collect().unwrap_err();
        let waited = started.elapsed();
        assert!(matches!(error, ClientError::Timeout { .. }), "{error}");
        assert!(waited < Duration::from_secs(4), "the 300 ms timeout took {waited:?}");
    }

    #[test]
    fn a_pipeline_over_a_socket_matches_out_of_order_replies_and_settles_quiet_moves() {
        use crate::outcome::{Notice, NoticeKind};
        let notice = Notice {
            hunt: 2,
            seq: 1,
            kind: NoticeKind::TopChanged { player: 1, score: 5, rank_before: 0, rank_after: 1 },
        };
        // Queued: move(h1, quiet), rank(h2), move(h2, quiet), ping; then barriers for h1, h2.
        let address = fake_server(
            move |requests| {
                let ids: Vec<u32> = requests.iter().map(|(id, _, _)| *id).collect();
                assert_eq!(requests.len(), 6, "{requests:?}");
                assert_eq!(requests[0].1, FLAG_QUIET);
                assert_eq!(requests[4].2, Request::Event(Event::Top { hunt: 1, count: 0 }));
                assert_eq!(requests[5].2, Request::Event(Event::Top { hunt: 2, count: 0 }));
                vec![
                    Response::Reply { request_id: ids[3], body: ReplyBody::Pong },
                    Response::Push(PushBody::Notice(notice)),
                    Response::Error { request_id: ids[0], code: 123, message: "out".into() },
                    Response::Error { request_id: ids[1], code: 120, message: "not joined".into() },
                    Response::Reply { request_id: ids[5], body: ReplyBody::Top { total: 0, entries: vec![] } },
                    Response::Reply { request_id: ids[4], body: ReplyBody::Top { total: 0, entries: vec![] } },
                ]
            },
            6,
        );
        let mut client = Client::connect(address).unwrap();
        assert_eq!(client.shard_count(), 3);
        let mut pipeline = client.pipeline();
        pipeline.push_quiet_move(1, 1, 2, Position::new(5, 5)).unwrap();
        pipeline.push(&Event::Rank { hunt: 2, player: 1 }).unwrap();
        pipeline.push_quiet_move(2, 1, 3, Position::new(5, 5)).unwrap();
        pipeline.push_request(&Request::Ping, false).unwrap();
        assert_eq!(pipeline.len(), 4);
        pipeline.flush().unwrap();
        let answers = pipeline.collect().unwrap();
        assert_eq!(
            answers,
            [
                Answer::Refused { code: 123, message: "out".into() },
                Answer::Refused { code: 120, message: "not joined".into() },
                Answer::Quiet,
                Answer::Reply(ReplyBody::Pong),
            ]
        );
        assert_eq!(client.next_push(Duration::from_secs(5)).unwrap(), Some(PushBody::Notice(notice)));
    }

    #[test]
    fn a_refusal_and_a_goodbye_reach_the_caller_with_their_reasons() {
        let address = fake_server(
            |requests| {
                vec![
                    Response::Error { request_id: requests[0].0, code: 114, message: "claimed out".into() },
                    Response::Push(PushBody::Goodbye { code: 10, message: "bye".into() }),
                ]
            },
            1,
        );
        let mut client = Client::connect(address).unwrap();
        let error = client.dig(1, 2, 3, 4, Position::new(0, 0)).unwrap_err();
        assert_eq!(error.code(), Some(114), "{error}");
        let goodbye = client.next_push(Duration::from_secs(5)).unwrap();
        assert_eq!(goodbye, Some(PushBody::Goodbye { code: 10, message: "bye".into() }));
        assert!(client.is_closed());
    }

    #[test]
    fn next_push_takes_any_timeout_even_one_too_long_for_a_deadline() {
        let notice = crate::outcome::Notice {
            hunt: 4,
            seq: 1,
            kind: crate::outcome::NoticeKind::Lifecycle(crate::outcome::Lifecycle::Started),
        };
        let address = fake_server(move |_| vec![Response::Push(PushBody::Notice(notice))], 0);
        let mut client = Client::connect(address).unwrap();
        assert_eq!(client.next_push(Duration::MAX).unwrap(), Some(PushBody::Notice(notice)));
    }

    #[test]
    fn an_undecodable_frame_from_the_server_closes_the_client() {
        let address = fake_server_bytes(
            |requests| {
                // A frame with an opcode no reply has, then a good PONG behind it.
                let mut bytes = vec![12, 0, 0, 0, 0x7E, 0, 0, 0, 1, 0, 0, 0];
                bytes.extend(frames(&[Response::Reply { request_id: requests[0].0, body: ReplyBody::Pong }]));
                bytes
            },
            1,
        );
        let mut client = Client::connect(address).unwrap();
        let error = client.ping().unwrap_err();
        assert!(matches!(error, ClientError::Protocol(_)), "{error}");
        assert!(client.is_closed(), "a stream that does not decode cannot be trusted further");
        let again = client.ping().unwrap_err();
        assert!(matches!(again, ClientError::Closed { .. }), "the second call got {again}");
    }

    #[test]
    fn codes_have_names() {
        assert_eq!(code_name(114), "treasure_exhausted");
        assert_eq!(code_name(2), "frame_too_large");
        assert_eq!(code_name(999), "unknown");
        let error = ClientError::Rejected { code: 114, message: "claimed out".into() };
        assert_eq!(error.to_string(), "the server refused the request with code 114 (treasure_exhausted): claimed out");
    }
}
