//! Redis as a target: the same scenario mapped to what a game backend would write with
//! Redis, pipelined over the same connections by the same worker loop.
//!
//! Hunts are geographic, so positions go into GEO sets (`GEOADD`), the structure a Redis
//! game backend uses for "where is everyone" and the one the issue names; a planar
//! `HSET x y` would dodge the geohash work and would not give `GEODIST`/`GEOSEARCH` for
//! the claim and hint checks. Per hunt `h` (every key starts with the run's prefix):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `h{h}:geo` | GEO | players as `p{id}` and treasures as `t{id}`: dig distances via `GEODIST` |
//! | `h{h}:tgeo` | GEO | treasures only, for hints (`GEOSEARCH`) |
//! | `h{h}:t{id}` | hash | `cap`, `claimed`, `value`, `radius` |
//! | `h{h}:t{id}:by` | set | players who claimed it |
//! | `h{h}:lb` | sorted set | scores (`ZINCRBY`; Redis breaks ties by member, not by time) |
//!
//! A move is `GEOADD`; a dig is one `EVALSHA` of [`DIG_SCRIPT`], which moves the player,
//! checks capacity, "not yet claimed" and distance, then awards with `HINCRBY`, `SADD`
//! and `ZINCRBY` (and `PUBLISH`es the discovery when the scenario has subscribers),
//! returning Cairn's rejection codes for the same reasons; an adjustment is `ZINCRBY`;
//! TOP is `ZREVRANGE ... WITHSCORES`, RANK `ZREVRANK`, AROUND and HINT are small scripts
//! so that each stays one round trip, as in Cairn. Cairn does more per event than this
//! mapping: it also checks sequence numbers (idempotent retries), membership, bounds and
//! the hunt's schedule, and breaks score ties by time. Two differences change answers
//! (see `perf/README.md`): a refused dig still moves the player here, which a later HINT
//! sees, and a dig right at a treasure's radius can be decided differently, since Redis
//! measures between geohash cells on a sphere and Cairn on a local plane.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::ledger::ServerView;
use crate::resp::{self, Command, Value};
use crate::target::{Ack, Reply};
use crate::workload::{degrees, Op, Players, World};

/// The dig: KEYS geo, treasure hash, claimers set, leaderboard; ARGV player, treasure,
/// longitude, latitude, channel ("" for none).
pub const DIG_SCRIPT: &str = r#"
local member = 'p' .. ARGV[1]
redis.call('GEOADD', KEYS[1], ARGV[3], ARGV[4], member)
local t = redis.call('HMGET', KEYS[2], 'cap', 'claimed', 'value', 'radius')
if not t[1] then return -111 end
if tonumber(t[2]) >= tonumber(t[1]) then return -114 end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return -115 end
local distance = tonumber(redis.call('GEODIST', KEYS[1], member, 't' .. ARGV[2], 'm'))
if distance > tonumber(t[4]) then return -117 end
local index = redis.call('HINCRBY', KEYS[2], 'claimed', 1)
redis.call('SADD', KEYS[3], ARGV[1])
local points = tonumber(t[3])
local score = redis.call('ZINCRBY', KEYS[4], points, ARGV[1])
if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[1] .. ':' .. ARGV[2] .. ':' .. index) end
return {index, points, tonumber(score)}
"#;

/// AROUND: KEYS leaderboard; ARGV player, radius.
pub const AROUND_SCRIPT: &str = r#"
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
if not rank then return {} end
local low = rank - tonumber(ARGV[2])
if low < 0 then low = 0 end
return redis.call('ZREVRANGE', KEYS[1], low, rank + tonumber(ARGV[2]), 'WITHSCORES')
"#;

/// HINT: KEYS geo, treasure geo; ARGV player, hint radius in metres, treasure key prefix.
/// The nearest of the 16 closest treasures that still has capacity and that the player
/// has not claimed; nil if none.
pub const HINT_SCRIPT: &str = r#"
local position = redis.call('GEOPOS', KEYS[1], 'p' .. ARGV[1])[1]
if not position then return false end
local near = redis.call('GEOSEARCH', KEYS[2], 'FROMLONLAT', position[1], position[2],
  'BYRADIUS', ARGV[2], 'm', 'ASC', 'COUNT', 16, 'WITHDIST')
for _, item in ipairs(near) do
  local key = ARGV[3] .. item[1]
  local t = redis.call('HMGET', key, 'cap', 'claimed')
  if tonumber(t[2]) < tonumber(t[1]) and redis.call('SISMEMBER', key .. ':by', ARGV[1]) == 0 then
    return math.floor(tonumber(item[2]))
  end
end
return false
"#;

/// Commands written before their replies are read in the blocking exchanges.
const BATCH_SIZE: usize = 1_024;
/// How long a blocking exchange waits for Redis.
const BLOCKING_TIMEOUT: Duration = Duration::from_secs(30);

/// The run's key prefix and loaded scripts.
#[derive(Clone, Debug, Default)]
pub struct RedisKeys {
    /// Prepended to every key, so runs on one server do not collide.
    pub prefix: String,
    /// SHA1 of [`DIG_SCRIPT`].
    pub dig: String,
    /// SHA1 of [`AROUND_SCRIPT`].
    pub around: String,
    /// SHA1 of [`HINT_SCRIPT`].
    pub hint: String,
    /// Digs publish discoveries (the scenario has subscribers).
    pub publish: bool,
}

impl RedisKeys {
    /// The pub/sub channel of a hunt's discoveries.
    pub fn channel(&self, hunt: u32) -> String {
        format!("{}h{hunt}:disc", self.prefix)
    }
}

/// Appends the command of `op`.
pub fn encode(world: &World, keys: &RedisKeys, op: &Op, out: &mut Vec<u8>) {
    let p = &keys.prefix;
    match *op {
        Op::Move { hunt, player, position, .. } => {
            Command::begin(out, 5)
                .text("GEOADD")
                .display(format_args!("{p}h{hunt}:geo"))
                .display(degrees(position.x))
                .display(degrees(position.y))
                .display(format_args!("p{player}"));
        }
        Op::Dig { hunt, player, treasure, position, .. } => {
            let channel = if keys.publish { keys.channel(hunt) } else { String::new() };
            Command::begin(out, 12)
                .text("EVALSHA")
                .text(&keys.dig)
                .text("4")
                .display(format_args!("{p}h{hunt}:geo"))
                .display(format_args!("{p}h{hunt}:t{treasure}"))
                .display(format_args!("{p}h{hunt}:t{treasure}:by"))
                .display(format_args!("{p}h{hunt}:lb"))
                .display(player)
                .display(treasure)
                .display(degrees(position.x))
                .display(degrees(position.y))
                .text(&channel);
        }
        Op::Adjust { hunt, player, delta, .. } => {
            Command::begin(out, 4)
                .text("ZINCRBY")
                .display(format_args!("{p}h{hunt}:lb"))
                .display(delta)
                .display(player);
        }
        Op::Top { hunt, count } => {
            Command::begin(out, 5)
                .text("ZREVRANGE")
                .display(format_args!("{p}h{hunt}:lb"))
                .text("0")
                .display(count as i64 - 1)
                .text("WITHSCORES");
        }
        Op::Rank { hunt, player } => {
            Command::begin(out, 3).text("ZREVRANK").display(format_args!("{p}h{hunt}:lb")).display(player);
        }
        Op::Around { hunt, player, radius } => {
            Command::begin(out, 6)
                .text("EVALSHA")
                .text(&keys.around)
                .text("1")
                .display(format_args!("{p}h{hunt}:lb"))
                .display(player)
                .display(radius);
        }
        Op::Hint { hunt, player } => {
            Command::begin(out, 8)
                .text("EVALSHA")
                .text(&keys.hint)
                .text("2")
                .display(format_args!("{p}h{hunt}:geo"))
                .display(format_args!("{p}h{hunt}:tgeo"))
                .display(player)
                .display(world.scenario.treasures.hint_radius_m)
                .display(format_args!("{p}h{hunt}:t"));
        }
    }
}

/// Parses one reply. Redis answers in order, so the id is `None`.
pub fn parse(buffer: &[u8]) -> Result<Option<(usize, Reply)>> {
    let Some((value, used)) = resp::parse(buffer)? else { return Ok(None) };
    Ok(Some((used, Reply { id: None, ack: ack_of(value) })))
}

/// What a reply means: the dig script answers `{index, points, score}` for an award and
/// a negated Cairn rejection code for a refusal; pub/sub messages are pushes.
fn ack_of(value: Value) -> Ack {
    match value {
        Value::Error(message) => Ack::Failed(message),
        Value::Integer(code) if code <= -100 => Ack::Rejected((-code).min(u16::MAX as i64) as u16),
        Value::Array(Some(items)) => match items.as_slice() {
            [Value::Integer(_), Value::Integer(points), Value::Integer(_)] => Ack::Award { points: *points },
            [Value::Bulk(Some(kind)), _, _] if kind == b"message" => Ack::Push { hunt: 0, seq: 0 },
            _ => Ack::Done,
        },
        _ => Ack::Done,
    }
}

/// A blocking connection for set-up, validation and subscriptions.
pub struct Blocking {
    stream: TcpStream,
    input: Vec<u8>,
}

impl Blocking {
    /// Connects.
    pub fn connect(addr: &str) -> Result<Blocking> {
        let stream = TcpStream::connect(addr).with_context(|| format!("cannot connect to redis at {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(BLOCKING_TIMEOUT))?;
        Ok(Blocking { stream, input: Vec::new() })
    }

    /// The stream, handed to the worker loop.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Sends commands built by `build` (one call per command index) in batches, and
    /// returns every reply in order.
    pub fn exchange(&mut self, count: usize, mut build: impl FnMut(usize, &mut Vec<u8>)) -> Result<Vec<Value>> {
        let mut replies = Vec::with_capacity(count);
        let mut next = 0;
        while next < count {
            let end = (next + BATCH_SIZE).min(count);
            let mut out = Vec::new();
            (next..end).for_each(|index| build(index, &mut out));
            self.stream.write_all(&out).context("cannot write to redis")?;
            for _ in next..end {
                replies.push(self.read_value()?);
            }
            next = end;
        }
        Ok(replies)
    }

    /// Reads one reply.
    pub fn read_value(&mut self) -> Result<Value> {
        loop {
            if let Some((value, used)) = resp::parse(&self.input)? {
                self.input.drain(..used);
                return Ok(value);
            }
            let mut chunk = [0u8; 64 * 1024];
            let read = self.stream.read(&mut chunk).context("cannot read from redis")?;
            if read == 0 {
                bail!("redis closed the connection");
            }
            self.input.extend_from_slice(&chunk[..read]);
        }
    }
}

fn expect_ok(what: &str, replies: &[Value]) -> Result<()> {
    match replies.iter().find(|reply| matches!(reply, Value::Error(_))) {
        Some(Value::Error(message)) => bail!("{what} failed: {message}"),
        _ => Ok(()),
    }
}

/// Loads the scripts and writes the scenario's state: treasures, players at their start
/// positions with score 0 (the mapping of CREATE_HUNT, PLACE_TREASURE and JOIN).
pub fn setup(blocking: &mut Blocking, world: &World, prefix: &str, players: &[&Players]) -> Result<RedisKeys> {
    let scripts = [DIG_SCRIPT, AROUND_SCRIPT, HINT_SCRIPT];
    let loaded = blocking.exchange(3, |index, out| {
        Command::begin(out, 3).text("SCRIPT").text("LOAD").text(scripts[index]);
    })?;
    expect_ok("SCRIPT LOAD", &loaded)?;
    let sha = |value: &Value| match value {
        Value::Bulk(Some(bytes)) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        other => bail!("SCRIPT LOAD answered {other:?}"),
    };
    let keys = RedisKeys {
        prefix: prefix.to_string(),
        dig: sha(&loaded[0])?,
        around: sha(&loaded[1])?,
        hint: sha(&loaded[2])?,
        publish: world.scenario.subscribers > 0,
    };
    let count = world.scenario.treasures.count as usize;
    let replies = blocking.exchange(world.treasures.len() * 3, |index, out| {
        let (treasure_index, part) = (index / 3, index % 3);
        let (hunt, treasure) = (treasure_index / count, treasure_index % count);
        let laid = &world.treasures[treasure_index];
        let position = world.position(laid.x_m, laid.y_m);
        let (lon, lat) = (degrees(position.x), degrees(position.y));
        match part {
            0 => {
                Command::begin(out, 10)
                    .text("HSET")
                    .display(format_args!("{prefix}h{hunt}:t{treasure}"))
                    .text("cap")
                    .display(laid.capacity)
                    .text("claimed")
                    .text("0")
                    .text("value")
                    .display(laid.value)
                    .text("radius")
                    .display(laid.radius_m);
            }
            1 => {
                let key = format!("{prefix}h{hunt}:geo");
                Command::begin(out, 5)
                    .text("GEOADD")
                    .text(&key)
                    .display(lon)
                    .display(lat)
                    .display(format_args!("t{treasure}"));
            }
            _ => {
                let key = format!("{prefix}h{hunt}:tgeo");
                Command::begin(out, 5).text("GEOADD").text(&key).display(lon).display(lat).display(treasure);
            }
        }
    })?;
    expect_ok("placing treasures", &replies)?;
    let all: Vec<(u32, u32, cairn::event::Position)> = players
        .iter()
        .flat_map(|owned| owned.players.iter().enumerate().map(|(i, p)| (p.hunt, p.player, owned.position(world, i))))
        .collect();
    let replies = blocking.exchange(all.len() * 2, |index, out| {
        let (hunt, player, position) = all[index / 2];
        if index % 2 == 0 {
            Command::begin(out, 5)
                .text("GEOADD")
                .display(format_args!("{prefix}h{hunt}:geo"))
                .display(degrees(position.x))
                .display(degrees(position.y))
                .display(format_args!("p{player}"));
        } else {
            Command::begin(out, 4).text("ZADD").display(format_args!("{prefix}h{hunt}:lb")).text("0").display(player);
        }
    })?;
    expect_ok("joining players", &replies)?;
    Ok(keys)
}

/// Subscribes a connection to the discovery channels of `hunts`.
pub fn subscribe(blocking: &mut Blocking, keys: &RedisKeys, hunts: &[u32]) -> Result<()> {
    let mut out = Vec::new();
    let mut command = Command::begin(&mut out, hunts.len() + 1).text("SUBSCRIBE");
    for hunt in hunts {
        command = command.text(&keys.channel(*hunt));
    }
    blocking.stream.write_all(&out)?;
    for _ in hunts {
        match blocking.read_value()? {
            Value::Array(Some(items)) if items.first() == Some(&Value::Bulk(Some(b"subscribe".to_vec()))) => {}
            other => bail!("SUBSCRIBE answered {other:?}"),
        }
    }
    Ok(())
}

/// Redis's own state for validation: claims and capacity of every treasure (and whether
/// its claimers set agrees), and every player's score.
pub fn server_view(blocking: &mut Blocking, world: &World, prefix: &str) -> Result<ServerView> {
    let count = world.scenario.treasures.count as usize;
    let replies = blocking.exchange(world.treasures.len() * 2, |index, out| {
        let treasure_index = index / 2;
        let (hunt, treasure) = (treasure_index / count, treasure_index % count);
        if index % 2 == 0 {
            Command::begin(out, 4)
                .text("HMGET")
                .display(format_args!("{prefix}h{hunt}:t{treasure}"))
                .text("claimed")
                .text("cap");
        } else {
            Command::begin(out, 2).text("SCARD").display(format_args!("{prefix}h{hunt}:t{treasure}:by"));
        }
    })?;
    expect_ok("reading treasures", &replies)?;
    let mut view = ServerView::default();
    for (treasure_index, pair) in replies.chunks(2).enumerate() {
        let fields = match &pair[0] {
            Value::Array(Some(fields)) if fields.len() == 2 => fields,
            other => bail!("HMGET answered {other:?}"),
        };
        let number = |value: &Value| value.as_i64().with_context(|| format!("treasure field {value:?}"));
        let (claimed, capacity) = (number(&fields[0])? as u32, number(&fields[1])? as u32);
        let claimers = number(&pair[1])? as u32;
        if claimers != claimed {
            let (hunt, treasure) = (treasure_index / count, treasure_index % count);
            view.doubles
                .push(format!("treasure {treasure} of hunt {hunt}: {claimed} claims by {claimers} distinct players"));
        }
        view.treasures.push((claimed, capacity));
    }
    let players_per_hunt = world.scenario.players_per_hunt as usize;
    let scores = blocking.exchange(world.scenario.players_total() as usize, |slot, out| {
        let (hunt, player) = (slot / players_per_hunt, slot % players_per_hunt);
        Command::begin(out, 3).text("ZSCORE").display(format_args!("{prefix}h{hunt}:lb")).display(player);
    })?;
    for score in scores {
        let text = match &score {
            Value::Bulk(Some(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            other => bail!("ZSCORE answered {other:?}"),
        };
        let parsed: f64 = text.parse().with_context(|| format!("score {text:?}"))?;
        view.players.push((parsed as i64, None));
    }
    Ok(view)
}

/// Deletes the run's keys.
pub fn teardown(blocking: &mut Blocking, world: &World, prefix: &str) -> Result<()> {
    let count = world.scenario.treasures.count as usize;
    let per_hunt = 3 + 2 * count;
    let replies = blocking.exchange(world.scenario.hunts as usize * per_hunt, |index, out| {
        let (hunt, part) = (index / per_hunt, index % per_hunt);
        let key = match part {
            0 => format!("{prefix}h{hunt}:geo"),
            1 => format!("{prefix}h{hunt}:tgeo"),
            2 => format!("{prefix}h{hunt}:lb"),
            n if n % 2 == 1 => format!("{prefix}h{hunt}:t{}", (n - 3) / 2),
            n => format!("{prefix}h{hunt}:t{}:by", (n - 3) / 2),
        };
        Command::begin(out, 2).text("UNLINK").text(&key);
    })?;
    expect_ok("UNLINK", &replies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn::event::Position;

    fn world() -> World {
        World::new(&crate::scenario::Scenario::default_for_tests())
    }

    fn keys() -> RedisKeys {
        RedisKeys { prefix: "r1:".into(), dig: "d1".into(), around: "a1".into(), hint: "h1".into(), publish: false }
    }

    fn encoded(op: Op) -> String {
        let mut out = Vec::new();
        encode(&world(), &keys(), &op, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_move_is_a_geoadd_in_decimal_degrees() {
        let text = encoded(Op::Move { hunt: 3, player: 9, seq: 2, position: Position::new(23_522_000, 488_566_123) });
        assert_eq!(
            text,
            "*5\r\n$6\r\nGEOADD\r\n$9\r\nr1:h3:geo\r\n$9\r\n2.3522000\r\n$10\r\n48.8566123\r\n$2\r\np9\r\n"
        );
    }

    #[test]
    fn a_dig_names_its_four_keys() {
        let text = encoded(Op::Dig { hunt: 1, player: 4, seq: 3, treasure: 7, position: Position::new(1, 2) });
        for part in [
            "EVALSHA",
            "$2\r\nd1\r\n",
            "$1\r\n4\r\n",
            "r1:h1:geo",
            "r1:h1:t7\r\n",
            "r1:h1:t7:by",
            "r1:h1:lb",
            "$0\r\n\r\n",
        ] {
            assert!(text.contains(part), "{part:?} in {text:?}");
        }
        assert!(text.starts_with("*12\r\n"));
    }

    #[test]
    fn replies_become_acks() {
        assert_eq!(ack_of(Value::Integer(-115)), Ack::Rejected(115));
        assert_eq!(ack_of(Value::Integer(3)), Ack::Done, "ZREVRANK's rank is not a rejection");
        assert_eq!(
            ack_of(Value::Array(Some(vec![Value::Integer(1), Value::Integer(40), Value::Integer(90)]))),
            Ack::Award { points: 40 }
        );
        assert_eq!(ack_of(Value::Error("NOSCRIPT".into())), Ack::Failed("NOSCRIPT".into()));
        let message = vec![Value::Bulk(Some(b"message".to_vec())), Value::Bulk(Some(b"c".to_vec())), Value::Bulk(None)];
        assert_eq!(ack_of(Value::Array(Some(message))), Ack::Push { hunt: 0, seq: 0 });
        assert_eq!(ack_of(Value::Bulk(Some(b"12".to_vec()))), Ack::Done);
    }
}
