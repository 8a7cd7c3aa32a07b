//! Cairn's wire protocol: length-prefixed little-endian frames between game backends and
//! the server. `docs/protocol.md` is the contract for clients in any language; this
//! module is its one implementation.
//!
//! A frame is a 12-byte header (`length u32, opcode u8, flags u8, reserved u16,
//! request_id u32`) and a body whose layout the opcode fixes. Clients send requests
//! (HELLO first, then any mix of pings, stats, subscriptions and state-machine events,
//! pipelined); the server answers each with a reply (opcode | 0x80, same request id) or
//! an ERROR frame, and sends pushes (opcodes 0x40..=0x4F, flag PUSH, request id 0) to
//! subscribers.
//!
//! The two directions have different budgets. The server decodes requests in place from
//! its read buffer ([`decode_request`] borrows, never allocates) and encodes replies and
//! pushes by appending to pooled buffers (the `encode_*` functions allocate only if the
//! buffer must grow). The client side ([`decode_response`]) returns owned values and may
//! allocate. Both decoders accept exactly one encoding of each value, so a decoded frame
//! always re-encodes to the bytes it came from; the property tests in `tests.rs` hold
//! them to it.
//!
//! Files: `frame.rs` the header, flags and stream splitting; `opcode.rs` the opcode
//! table; `error.rs` the error codes; `request.rs` requests both ways; `reply.rs` and
//! `push.rs` the server's encoders; `response.rs` the client's decoder; `record.rs` the
//! records bodies share; `wire.rs` little-endian field access.

mod error;
mod frame;
mod opcode;
mod push;
mod record;
mod reply;
mod request;
mod response;
mod wire;

#[cfg(test)]
mod tests;

pub use error::{ErrorCode, ProtocolError};
pub use frame::{check_header, next_frame, request_id_of, FrameHeader, Frames, FLAG_MARK, FLAG_PUSH, FLAG_QUIET};
pub use opcode::{Opcode, REPLY_BIT};
pub use push::{encode_gap, encode_goodbye, encode_notice, notice_opcode, Gap};
pub use reply::{
    encode_error, encode_hello_reply, encode_outcome, encode_pong, encode_protocol_error, encode_rejection,
    encode_stats_reply, encode_subscribed, encode_unsubscribed, reply_wanted, ServerHello,
};
pub use request::{decode_request, encode_request, negotiate, Request, TOPICS_ALL};
pub use response::{decode_response, encode_response, PushBody, ReplyBody, Response};
