//! The TCP server: one thread per shard, each with its own `mio::Poll`, its own listener
//! on the shared port (SO_REUSEPORT), its own connections and its own state machine,
//! joined by a full mesh of bounded single-producer rings.
//!
//! [`Server::start`] first opens the data directory when durability is on: every shard
//! recovers its journal ([`durable`]) before anything listens. It then binds every shard's listener, builds the rings, spawns the shard
//! threads ([`shard_loop`]) and returns once each is running. Each event is routed to
//! `shard_for(event.hunt(), shard_count)`: applied at once when the connection's shard
//! owns the hunt, otherwise handed over a REQUEST ring and answered over the REPLY ring
//! (see [`ring`](mod@ring)). A [`ShutdownHandle`] asks every shard to stop accepting, finish the
//! frames already read, flush replies, say GOODBYE and exit; [`Server::wait`] joins them.
//!
//! Module map: [`auth`] (tokens and roles), [`connection`] (one socket and its buffers), [`slab`] (connections by
//! token), [`durable`] (the data directory, recovery and the journal writers), [`ring`](mod@ring) (records between shards), [`subscriptions`] (who gets which notice),
//! [`stats`] (counters, histograms, the STATS document), [`clock`] (time per turn).

pub mod auth;
pub mod clock;
pub mod connection;
pub mod durable;
pub mod ring;
pub mod shard_loop;
pub mod slab;
pub mod stats;
pub mod subscriptions;

use std::fmt;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::constants::{
    CONNECTIONS_MAX, CONNECTIONS_PER_SHARD_MAX, FRAME_SIZE_MAX, FRAME_TIMEOUT_US, HELLO_TIMEOUT_US,
    IDLE_TIMEOUT_US_MAX, INFLIGHT_REQUESTS_PER_CONNECTION_MAX, LISTEN_BACKLOG, OUTPUT_BUFFER_BYTES_HIGH,
    RING_SIZE_BYTES, SHARDS_MAX, SNAPSHOT_INTERVAL_EVENTS, SUBSCRIBER_BUFFER_BYTES_MAX, SUBSCRIBER_BUFFER_BYTES_SOFT,
    TIMEOUT_US_MAX, WRITE_TIMEOUT_US,
};
use crate::journal::Durability;

pub use self::auth::Secret;
use self::clock::Epoch;
use self::ring::{ring, RingConsumer, RingProducer};
use self::shard_loop::{ShardLoop, ShardRings, LISTENER, WAKER};
use self::stats::Snapshot;

/// Writes one line for the operator on standard error. A line stderr cannot take (its
/// reader went away, `2>/dev/full`) is dropped: `eprintln!` would panic there, and a log
/// line must never stop the server or one of its shards.
pub fn log_line(line: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// The port `cairn serve` listens on by default.
pub const DEFAULT_PORT: u16 = 7411;

/// How a server runs. Limits default to the constants and may be lowered, never raised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (see [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// Shard threads, from 1 to `SHARDS_MAX`.
    pub shards: usize,
    /// Connections each shard holds at once; one more is refused with ERROR
    /// `too_many_connections`.
    pub connections_per_shard_max: usize,
    /// Connections the whole server holds at once (counted across shards); one more is
    /// refused with ERROR `too_many_connections` and closed.
    pub connections_max: usize,
    /// Microseconds a new connection has to complete HELLO.
    pub hello_timeout_us: u64,
    /// Microseconds a frame has to arrive whole once its first byte has.
    pub frame_timeout_us: u64,
    /// Microseconds pending output may wait without a byte written before the connection
    /// is told GOODBYE `slow_consumer` and closed.
    pub write_timeout_us: u64,
    /// Microseconds a greeted connection with no subscription and nothing in flight may
    /// send nothing before GOODBYE `idle_timeout`; 0 (the default) never.
    pub idle_timeout_us: u64,
    /// The token HELLO must carry (`--auth-token`); see [`auth`] for the roles.
    pub auth_token: Option<Secret>,
    /// The token that grants admin operations (`--admin-token`); see [`auth`].
    pub admin_token: Option<Secret>,
    /// Pending output (bytes) above which a connection's requests wait.
    pub output_buffer_bytes_high: usize,
    /// Pending output (bytes) above which pushes are dropped and owed as a GAP.
    pub subscriber_buffer_bytes_soft: usize,
    /// Pending output (bytes) above which the connection gets GOODBYE and is closed.
    pub subscriber_buffer_bytes_max: usize,
    /// Requests one connection may have waiting on other shards.
    pub inflight_requests_per_connection_max: u32,
    /// Size of each ring between two shards, in bytes.
    pub ring_size_bytes: usize,
    /// Pin each shard thread to one core, when there are enough cores.
    pub pin_threads: bool,
    /// What a reply to a mutating event promises: nothing beyond memory (`None`), written
    /// to the journal (`Os`), or written and fdatasync'ed (`Fsync`).
    pub durability: Durability,
    /// Where the journals live (shard k in `DIR/shard-k/`); required unless `durability`
    /// is `None`, and refused with it.
    pub data_dir: Option<PathBuf>,
    /// Journaled events between two snapshots of a shard.
    pub snapshot_interval_events: u64,
}

impl Default for Config {
    fn default() -> Config {
        let cores = std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1);
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            shards: cores.min(SHARDS_MAX),
            connections_per_shard_max: CONNECTIONS_PER_SHARD_MAX,
            connections_max: CONNECTIONS_MAX,
            hello_timeout_us: HELLO_TIMEOUT_US,
            frame_timeout_us: FRAME_TIMEOUT_US,
            write_timeout_us: WRITE_TIMEOUT_US,
            idle_timeout_us: 0,
            auth_token: None,
            admin_token: None,
            output_buffer_bytes_high: OUTPUT_BUFFER_BYTES_HIGH,
            subscriber_buffer_bytes_soft: SUBSCRIBER_BUFFER_BYTES_SOFT,
            subscriber_buffer_bytes_max: SUBSCRIBER_BUFFER_BYTES_MAX,
            inflight_requests_per_connection_max: INFLIGHT_REQUESTS_PER_CONNECTION_MAX,
            ring_size_bytes: RING_SIZE_BYTES,
            pin_threads: false,
            durability: Durability::None,
            data_dir: None,
            snapshot_interval_events: SNAPSHOT_INTERVAL_EVENTS,
        }
    }
}

impl Config {
    /// Checks every limit against its constant.
    fn validate(&self) -> io::Result<()> {
        let invalid = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        if self.shards == 0 || self.shards > SHARDS_MAX {
            return invalid(format!("shards must be within 1..={SHARDS_MAX}, not {}", self.shards));
        }
        if self.connections_per_shard_max == 0 || self.connections_per_shard_max > CONNECTIONS_PER_SHARD_MAX {
            return invalid(format!("connections per shard must be within 1..={CONNECTIONS_PER_SHARD_MAX}"));
        }
        if self.connections_max == 0 || self.connections_max > CONNECTIONS_MAX {
            return invalid(format!("connections must be within 1..={CONNECTIONS_MAX}"));
        }
        let timeouts =
            [("hello", self.hello_timeout_us), ("frame", self.frame_timeout_us), ("write", self.write_timeout_us)];
        for (name, timeout_us) in timeouts {
            if timeout_us == 0 || timeout_us > TIMEOUT_US_MAX {
                return invalid(format!("the {name} timeout must be within 1..={TIMEOUT_US_MAX} microseconds"));
            }
        }
        if self.idle_timeout_us > IDLE_TIMEOUT_US_MAX {
            return invalid(format!("the idle timeout must be at most {IDLE_TIMEOUT_US_MAX} microseconds (0: none)"));
        }
        if let (Some(auth), Some(admin)) = (&self.auth_token, &self.admin_token) {
            if auth == admin {
                return invalid("the admin token must differ from the auth token".to_owned());
            }
        }
        if self.output_buffer_bytes_high == 0 || self.output_buffer_bytes_high > OUTPUT_BUFFER_BYTES_HIGH {
            return invalid(format!("the output high-water mark must be within 1..={OUTPUT_BUFFER_BYTES_HIGH}"));
        }
        if self.subscriber_buffer_bytes_soft > SUBSCRIBER_BUFFER_BYTES_SOFT
            || self.subscriber_buffer_bytes_max > SUBSCRIBER_BUFFER_BYTES_MAX
            || self.subscriber_buffer_bytes_soft >= self.subscriber_buffer_bytes_max
        {
            return invalid(format!(
                "subscriber limits must satisfy soft < max, soft <= {SUBSCRIBER_BUFFER_BYTES_SOFT}, \
                 max <= {SUBSCRIBER_BUFFER_BYTES_MAX}"
            ));
        }
        // Decoding stops once pending output is above the high-water mark, checked before
        // each frame, so a connection's own replies reach that plus one frame whatever its
        // reading speed; a hard limit at or below it cuts a subscriber that reads at once
        // at its next push, for replies it was about to be paced on.
        let replies_bytes_max = self.output_buffer_bytes_high + FRAME_SIZE_MAX;
        if self.subscriber_buffer_bytes_max <= replies_bytes_max {
            return invalid(format!(
                "the subscriber hard limit ({}) must be above the output high-water mark plus one frame \
                 ({replies_bytes_max} bytes)",
                self.subscriber_buffer_bytes_max
            ));
        }
        let inflight = self.inflight_requests_per_connection_max;
        if inflight == 0 || inflight > INFLIGHT_REQUESTS_PER_CONNECTION_MAX {
            return invalid(format!("in-flight requests must be within 1..={INFLIGHT_REQUESTS_PER_CONNECTION_MAX}"));
        }
        if self.ring_size_bytes < 2 * ring::record_size(ring::PAYLOAD_SIZE_MAX)
            || self.ring_size_bytes > RING_SIZE_BYTES
        {
            return invalid(format!(
                "ring size must be within {}..={RING_SIZE_BYTES} bytes",
                2 * ring::record_size(ring::PAYLOAD_SIZE_MAX)
            ));
        }
        match (self.durability, &self.data_dir) {
            (Durability::None, Some(dir)) => {
                return invalid(format!("a data directory ({}) needs durability os or fsync", dir.display()))
            }
            (Durability::Os | Durability::Fsync, None) => {
                return invalid(format!("durability {} needs a data directory to keep the journal in", self.durability))
            }
            _ => {}
        }
        if self.snapshot_interval_events == 0 {
            return invalid("the snapshot interval must be at least one event".to_owned());
        }
        Ok(())
    }
}

/// What the shard threads share: set up once, then read (snapshots behind a mutex each).
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) epoch: Epoch,
    pub(crate) shutdown: AtomicBool,
    /// Shards that have finished their own work while shutting down.
    pub(crate) shards_quiet: AtomicUsize,
    /// Connections open on all shards, against `Config::connections_max`.
    pub(crate) connections_open: AtomicUsize,
    pub(crate) wakers: Vec<Arc<Waker>>,
    pub(crate) snapshots: Vec<Mutex<Snapshot>>,
}

impl Shared {
    /// Asks every shard to stop gracefully and wakes them to notice.
    pub(crate) fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for waker in &self.wakers {
            // A shard that has already exited has dropped its poll; nothing to wake.
            let _ = waker.wake();
        }
    }
}

/// Asks a running server to stop gracefully. Cheap to clone and send to other threads.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Requests a graceful stop: stop accepting, finish the frames already read, flush
    /// replies, say GOODBYE, close. Returns at once; [`Server::wait`] waits.
    pub fn shutdown(&self) {
        self.shared.request_shutdown();
    }
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    /// The data directory's lock, held until the server is dropped.
    _data_dir_lock: Option<durable::DataDirLock>,
}

impl Server {
    /// Recovers every shard's journal (with durability on), binds every shard's
    /// listener, spawns the shard threads and returns once every shard is running its
    /// loop. A journal that cannot be recovered fails the start with a message naming
    /// the file (and offset), before anything listens. An address some other socket
    /// already listens on (another server, say) is refused with `AddrInUse`, naming it.
    pub fn start(config: Config) -> io::Result<Server> {
        config.validate()?;
        let shard_count = config.shards;
        let cannot_listen = |address: SocketAddr| {
            move |error: io::Error| io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
        };
        // Before recovery, which may take seconds and creates the data directory.
        refuse_port_in_use(config.listen).map_err(cannot_listen(config.listen))?;
        let (mut opened, data_dir_lock) = durable::open_shards(&config)?;
        let first = bind(config.listen).map_err(cannot_listen(config.listen))?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..shard_count {
            listeners.push(bind(local_addr).map_err(cannot_listen(local_addr))?);
        }
        let mut polls = Vec::with_capacity(shard_count);
        let mut wakers = Vec::with_capacity(shard_count);
        for _ in 0..shard_count {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
            polls.push(poll);
        }
        let shared = Arc::new(Shared {
            config: config.clone(),
            epoch: Epoch::now(),
            shutdown: AtomicBool::new(false),
            shards_quiet: AtomicUsize::new(0),
            connections_open: AtomicUsize::new(0),
            wakers,
            snapshots: (0..shard_count).map(|_| Mutex::new(Snapshot::default())).collect(),
        });
        let mut rings = mesh(shard_count, config.ring_size_bytes);
        let cores = if config.pin_threads { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
        let (ready_sender, ready_receiver) = mpsc::channel();
        let mut threads = Vec::with_capacity(shard_count);
        for (index, (poll, listener)) in polls.into_iter().zip(listeners).enumerate().rev() {
            let shard_rings = rings.pop().expect("one set of rings per shard");
            let durable::Opened { engine, writer } = opened.pop().expect("one opened shard per shard");
            let syncer = match config.durability {
                Durability::Fsync => Some(durable::SyncThread::start(index, Arc::clone(&shared.wakers[index]))?),
                Durability::None | Durability::Os => None,
            };
            let shared = Arc::clone(&shared);
            let ready = ready_sender.clone();
            let core = if cores.len() >= shard_count { cores.get(index).copied() } else { None };
            let mut listener = mio::net::TcpListener::from_std(listener);
            poll.registry().register(&mut listener, LISTENER, mio::Interest::READABLE)?;
            let thread = std::thread::Builder::new().name(format!("cairn-shard-{index}")).spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let mut shard = ShardLoop::new(index, shared, poll, listener, shard_rings, engine, writer, syncer);
                // The receiver outlives every shard's start; a send cannot fail here.
                let _ = ready.send(index);
                shard.run()
            })?;
            threads.push(thread);
        }
        drop(ready_sender);
        for _ in 0..shard_count {
            if ready_receiver.recv().is_err() {
                break;
            }
        }
        Ok(Server { local_addr, shared, threads, _data_dir_lock: data_dir_lock })
    }

    /// The address the server listens on (with the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that can stop the server from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { shared: Arc::clone(&self.shared) }
    }

    /// Waits for every shard thread to finish; the first error any of them hit.
    pub fn wait(self) -> io::Result<()> {
        let mut result = Ok(());
        for thread in self.threads {
            let outcome = match thread.join() {
                Ok(outcome) => outcome,
                Err(_) => Err(io::Error::other("a shard thread panicked")),
            };
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }

    /// Requests a graceful stop and waits for it.
    pub fn shutdown(self) -> io::Result<()> {
        self.shutdown_handle().shutdown();
        self.wait()
    }
}

/// Fails with `AddrInUse` if any socket already listens on `address` (port 0 picks a free
/// port, so it needs no check). The shards' listeners share their port through
/// SO_REUSEPORT, which would just as well let them join the listeners of another server
/// the same user runs there: the kernel would then split new connections between two
/// servers with different state. A probe bound without SO_REUSEPORT conflicts with any
/// listener on the address (and, with SO_REUSEADDR, with none of the connections an
/// earlier server left in TIME_WAIT); it is closed before the real listeners bind.
fn refuse_port_in_use(address: SocketAddr) -> io::Result<()> {
    if address.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&address.into())
}

/// A listening socket with SO_REUSEPORT, so every shard can bind the same port and the
/// kernel spreads new connections among them.
fn bind(address: SocketAddr) -> io::Result<StdTcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Builds the full mesh: for every ordered pair (k, j), k ≠ j, a request ring k→j and a
/// reply ring j→k. Returns each shard's ends, indexed by shard.
fn mesh(shard_count: usize, ring_size_bytes: usize) -> Vec<ShardRings> {
    let none = || -> Vec<Option<RingProducer>> { (0..shard_count).map(|_| None).collect() };
    let none_in = || -> Vec<Option<RingConsumer>> { (0..shard_count).map(|_| None).collect() };
    let mut all: Vec<ShardRings> = (0..shard_count)
        .map(|_| ShardRings { request_out: none(), request_in: none_in(), reply_out: none(), reply_in: none_in() })
        .collect();
    for from in 0..shard_count {
        for to in 0..shard_count {
            if from == to {
                continue;
            }
            let (producer, consumer) = ring(ring_size_bytes);
            all[from].request_out[to] = Some(producer);
            all[to].request_in[from] = Some(consumer);
            let (producer, consumer) = ring(ring_size_bytes);
            all[to].reply_out[from] = Some(producer);
            all[from].reply_in[to] = Some(consumer);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;
    use crate::event::{Coordinates, Event, HuntOptions, HuntSpec, Position};
    use crate::protocol::{decode_response, encode_request, PushBody, ReplyBody, Request, Response, ServerHello};
    use crate::shard::shard_for;

    fn send(stream: &mut TcpStream, request_id: u32, request: Request) {
        let mut frame = Vec::new();
        encode_request(request_id, 0, &request, &mut frame).unwrap();
        stream.write_all(&frame).unwrap();
    }

    fn receive(stream: &mut TcpStream) -> Response {
        let mut length = [0; 4];
        stream.read_exact(&mut length).unwrap();
        let mut frame = length.to_vec();
        frame.resize(u32::from_le_bytes(length) as usize, 0);
        stream.read_exact(&mut frame[4..]).unwrap();
        decode_response(&frame).unwrap()
    }

    fn reply(stream: &mut TcpStream, request_id: u32, request: Request) -> ReplyBody {
        send(stream, request_id, request);
        match receive(stream) {
            Response::Reply { request_id: answered, body } => {
                assert_eq!(answered, request_id);
                body
            }
            other => panic!("expected a reply to request {request_id}, got {other:?}"),
        }
    }

    fn create_hunt(hunt: u32) -> Request<'static> {
        let spec = HuntSpec {
            coordinates: Coordinates::Planar,
            min: Position::new(0, 0),
            max: Position::new(1_000, 1_000),
            start: 0,
            end: u64::MAX,
            options: HuntOptions::default(),
        };
        Request::Event(Event::CreateHunt { hunt, spec })
    }

    #[test]
    fn a_two_shard_server_answers_and_stops_gracefully() {
        let config = Config { listen: SocketAddr::from(([127, 0, 0, 1], 0)), shards: 2, ..Config::default() };
        let server = Server::start(config).unwrap();
        assert_ne!(server.local_addr().port(), 0);
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let hello = reply(&mut stream, 1, Request::Hello { version_min: 1, version_max: 1, name: "smoke", token: &[] });
        assert!(matches!(hello, ReplyBody::Hello(ServerHello { shard_count: 2, .. })), "{hello:?}");
        // One hunt owned by each shard, so one of them crosses the rings whichever shard
        // accepted the connection.
        for shard in 0..2 {
            let hunt = (1..).find(|&hunt| shard_for(hunt, 2) == shard).unwrap();
            assert_eq!(reply(&mut stream, 10 + shard as u32, create_hunt(hunt)), ReplyBody::HuntCreated);
            send(&mut stream, 20 + shard as u32, create_hunt(hunt));
            match receive(&mut stream) {
                Response::Error { request_id, code, .. } => assert_eq!((request_id, code), (20 + shard as u32, 100)),
                other => panic!("a duplicate hunt was not refused: {other:?}"),
            }
        }
        assert_eq!(reply(&mut stream, 30, Request::Ping), ReplyBody::Pong);
        // Other shards' numbers are at most one snapshot interval old.
        std::thread::sleep(std::time::Duration::from_micros(2 * crate::constants::STATS_SNAPSHOT_INTERVAL_US));
        let ReplyBody::Stats { json } = reply(&mut stream, 31, Request::Stats) else { panic!("not a stats reply") };
        let document: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(document["shards"], 2);
        assert_eq!(document["events"]["create_hunt"], 4);
        assert_eq!(document["rejections"]["hunt_exists"], 2);
        assert!(document["connections"]["open"].as_u64().unwrap() >= 1);
        server.shutdown().unwrap();
        // The server said goodbye and closed.
        match receive(&mut stream) {
            Response::Push(PushBody::Goodbye { code, .. }) => assert_eq!(code, 10),
            other => panic!("expected GOODBYE, got {other:?}"),
        }
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
    }
}
