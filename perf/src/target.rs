//! What the worker loop needs from a target, whatever it speaks: encode an [`Op`] into
//! the output buffer, and parse one [`Reply`] from the input buffer. [`Codec`] is a closed
//! enum (Cairn, Redis, and the null server that acknowledges without work), so the hot
//! loop has no dynamic dispatch.
//!
//! Cairn replies carry the request id and may come back out of order across hunts;
//! Redis replies come back strictly in order and carry no id, so their [`Reply::id`] is
//! `None` and the loop matches them to its oldest request.

use anyhow::Result;

use crate::redis_target::RedisKeys;
use crate::workload::{Op, World};
use crate::{cairn_target, redis_target};

/// What a reply says about its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    /// Applied; nothing the ledger needs beyond the request itself.
    Done,
    /// A dig was awarded this many points.
    Award {
        /// Points awarded.
        points: i64,
    },
    /// The state machine refused the event (Cairn codes 100 and up; the Redis script
    /// returns the same codes for the same reasons).
    Rejected(u16),
    /// Anything else went wrong: a protocol error, a Redis error reply.
    Failed(String),
    /// A push to a subscriber: its hunt and, where the target numbers them, its sequence.
    Push {
        /// The hunt (Cairn); 0 for Redis.
        hunt: u32,
        /// The push's number on its topic (Cairn); 0 for Redis, which has none.
        seq: u64,
    },
    /// Cairn told a subscriber it missed pushes `first..=last`.
    Gap {
        /// Pushes missed.
        missed: u64,
    },
}

/// One parsed reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The request id it answers; `None` for in-order protocols and for pushes.
    pub id: Option<u32>,
    /// What it says.
    pub ack: Ack,
}

/// Which server a run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// `cairn serve`.
    Cairn,
    /// `redis-server`, with the mapping in `redis_target`.
    Redis,
    /// `cairn-perf null-server`: acknowledges every frame without work; measures the
    /// harness's own ceiling.
    Null,
}

impl TargetKind {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Cairn => "cairn",
            TargetKind::Redis => "redis",
            TargetKind::Null => "null",
        }
    }
}

/// The encoder and parser of one target.
#[derive(Clone, Debug)]
pub enum Codec {
    /// Cairn's protocol; hunts are numbered from `hunt_base`.
    Cairn {
        /// The id of hunt 0.
        hunt_base: u32,
    },
    /// RESP with the baseline's key layout.
    Redis(RedisKeys),
    /// Cairn's framing; every reply is an acknowledgement.
    Null,
}

impl Codec {
    /// Appends the request `op` with id `id`.
    pub fn encode(&self, world: &World, op: &Op, id: u32, out: &mut Vec<u8>) {
        match self {
            Codec::Cairn { hunt_base } => cairn_target::encode(*hunt_base, op, id, out),
            Codec::Redis(keys) => redis_target::encode(world, keys, op, out),
            Codec::Null => cairn_target::encode(0, op, id, out),
        }
    }

    /// Parses one reply from the start of `buffer`: `Ok(Some((bytes used, reply)))`, or
    /// `Ok(None)` if more bytes are needed; an error means the stream is broken.
    pub fn parse(&self, buffer: &[u8]) -> Result<Option<(usize, Reply)>> {
        match self {
            Codec::Cairn { .. } => cairn_target::parse(buffer),
            Codec::Redis(_) => redis_target::parse(buffer),
            Codec::Null => cairn_target::parse_null(buffer),
        }
    }

    /// Returns true if and only if replies arrive in request order without ids.
    pub fn in_order(&self) -> bool {
        matches!(self, Codec::Redis(_))
    }
}
