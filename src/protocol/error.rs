//! Protocol-level errors: the wire codes below 100 ([`ErrorCode`]) and the decoder's
//! error value ([`ProtocolError`]) that maps onto them.
//!
//! Codes 100 and up belong to the state machine (`Rejection::code`); this file owns the
//! rest. Each code says whether the server closes the connection after sending it: a peer
//! that sends a frame the server cannot parse (or a version it does not speak) is
//! speaking some other protocol, and nothing after that frame can be trusted. Errors are
//! plain `Copy` values with `'static` text, so producing one on the server never
//! allocates.

use std::fmt;

use super::opcode::Opcode;

/// A protocol-level error code, as carried in ERROR and GOODBYE frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ErrorCode {
    /// A frame's length, body size or field values do not follow this document.
    MalformedFrame = 1,
    /// A frame's length exceeds `FRAME_SIZE_MAX`.
    FrameTooLarge = 2,
    /// The opcode is not one the receiver accepts.
    UnknownOpcode = 3,
    /// The client's version range does not include `PROTOCOL_VERSION`.
    UnsupportedVersion = 4,
    /// The first frame of a connection was not HELLO.
    HelloRequired = 5,
    /// The header's reserved field, or a flag bit the opcode does not define, is set.
    ReservedBits = 6,
    /// The server cannot take this request now (overloaded, or draining to shut down).
    ServerBusy = 7,
    /// The connection already holds `SUBSCRIPTIONS_PER_CONNECTION_MAX` subscriptions.
    TooManySubscriptions = 8,
    /// HELLO arrived after the handshake was already done.
    UnexpectedHello = 9,
    /// GOODBYE reason: the server is shutting down.
    ShuttingDown = 10,
    /// GOODBYE reason: the connection's outgoing buffer stayed full; it reads too slowly.
    SlowConsumer = 11,
    /// The server's disk is full: the mutating event was refused (not applied, not
    /// journaled); queries are still answered. Retry once space is freed.
    DiskFull = 12,
    /// HELLO carried no token, or a wrong one, and the server requires one
    /// (`--auth-token`, `--admin-token`).
    Unauthorized = 13,
    /// The request is an admin operation (CREATE_HUNT, END_HUNT, DELETE_HUNT,
    /// PLACE_TREASURE, REMOVE_TREASURE, STATS) and the connection did not present the
    /// admin token.
    AdminRequired = 14,
    /// The server already holds its maximum of connections; sent instead of serving a
    /// new one.
    TooManyConnections = 15,
    /// GOODBYE reason: the connection did not complete HELLO in time.
    HelloTimeout = 16,
    /// GOODBYE reason: a frame started arriving but was not complete in time.
    FrameTimeout = 17,
    /// GOODBYE reason: the connection sent nothing for the idle timeout.
    IdleTimeout = 18,
}

impl ErrorCode {
    /// Number of codes.
    pub const COUNT: usize = 18;

    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; ErrorCode::COUNT] = [
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnknownOpcode,
        ErrorCode::UnsupportedVersion,
        ErrorCode::HelloRequired,
        ErrorCode::ReservedBits,
        ErrorCode::ServerBusy,
        ErrorCode::TooManySubscriptions,
        ErrorCode::UnexpectedHello,
        ErrorCode::ShuttingDown,
        ErrorCode::SlowConsumer,
        ErrorCode::DiskFull,
        ErrorCode::Unauthorized,
        ErrorCode::AdminRequired,
        ErrorCode::TooManyConnections,
        ErrorCode::HelloTimeout,
        ErrorCode::FrameTimeout,
        ErrorCode::IdleTimeout,
    ];

    /// The code as sent on the wire.
    pub const fn to_u16(self) -> u16 {
        self as u16
    }

    /// The protocol code with this number, if it is one; codes of 100 and up are the
    /// state machine's (see `Rejection::code`).
    pub const fn from_u16(code: u16) -> Option<ErrorCode> {
        if code >= 1 && code as usize <= ErrorCode::COUNT {
            Some(ErrorCode::ALL[code as usize - 1])
        } else {
            None
        }
    }

    /// Returns true if and only if the server closes the connection right after sending
    /// an ERROR or GOODBYE with this code.
    pub const fn closes_connection(self) -> bool {
        match self {
            ErrorCode::MalformedFrame
            | ErrorCode::FrameTooLarge
            | ErrorCode::UnknownOpcode
            | ErrorCode::UnsupportedVersion
            | ErrorCode::HelloRequired
            | ErrorCode::ShuttingDown
            | ErrorCode::SlowConsumer
            | ErrorCode::Unauthorized
            | ErrorCode::TooManyConnections
            | ErrorCode::HelloTimeout
            | ErrorCode::FrameTimeout
            | ErrorCode::IdleTimeout => true,
            ErrorCode::ReservedBits
            | ErrorCode::ServerBusy
            | ErrorCode::TooManySubscriptions
            | ErrorCode::UnexpectedHello
            | ErrorCode::DiskFull
            | ErrorCode::AdminRequired => false,
        }
    }

    /// A short snake-case name, for counters and the protocol document.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::MalformedFrame => "malformed_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnknownOpcode => "unknown_opcode",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::ReservedBits => "reserved_bits",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::UnexpectedHello => "unexpected_hello",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::DiskFull => "disk_full",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::AdminRequired => "admin_required",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::HelloTimeout => "hello_timeout",
            ErrorCode::FrameTimeout => "frame_timeout",
            ErrorCode::IdleTimeout => "idle_timeout",
        }
    }

    /// The default message sent with this code when nothing more specific is known.
    pub const fn message(self) -> &'static str {
        match self {
            ErrorCode::MalformedFrame => "malformed frame",
            ErrorCode::FrameTooLarge => "frame larger than the maximum frame size",
            ErrorCode::UnknownOpcode => "unknown opcode",
            ErrorCode::UnsupportedVersion => "no protocol version in common",
            ErrorCode::HelloRequired => "the first frame of a connection must be HELLO",
            ErrorCode::ReservedBits => "reserved header bits or undefined flag bits are set",
            ErrorCode::ServerBusy => "the server is busy; retry later",
            ErrorCode::TooManySubscriptions => "the connection holds the maximum number of subscriptions",
            ErrorCode::UnexpectedHello => "HELLO was already exchanged on this connection",
            ErrorCode::ShuttingDown => "the server is shutting down",
            ErrorCode::SlowConsumer => "the connection reads too slowly; its outgoing buffer stayed full",
            ErrorCode::DiskFull => "the server's disk is full: mutating events are refused until space is freed",
            ErrorCode::Unauthorized => "HELLO must carry the server's token: missing or wrong token",
            ErrorCode::AdminRequired => "this operation needs a connection authenticated with the admin token",
            ErrorCode::TooManyConnections => "the server holds its maximum number of connections; retry later",
            ErrorCode::HelloTimeout => "HELLO did not arrive in time after connecting",
            ErrorCode::FrameTimeout => "a frame started but did not arrive whole in time",
            ErrorCode::IdleTimeout => "the connection sent nothing for the idle timeout",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// Why a frame could not be decoded (or a request could not be encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolError {
    /// The header's length field is below the header size.
    LengthTooSmall {
        /// The length field.
        length: u32,
    },
    /// The header's length field exceeds `FRAME_SIZE_MAX` (or an encoder was asked to
    /// build such a frame).
    FrameTooLarge {
        /// The length field, or the size the frame would have had.
        length: u64,
    },
    /// A frame slice handed to a decoder is not exactly as long as its length field.
    LengthMismatch {
        /// The length field.
        length: u32,
        /// The slice's size, in bytes.
        size: usize,
    },
    /// The opcode byte is not one this side of the connection accepts.
    UnknownOpcode {
        /// The opcode byte.
        opcode: u8,
    },
    /// The header's reserved field is not zero.
    ReservedNotZero {
        /// The reserved field.
        reserved: u16,
    },
    /// Flag bits are set that this opcode does not define (or a push lacks its flag).
    InvalidFlags {
        /// The opcode byte.
        opcode: u8,
        /// The flags byte.
        flags: u8,
    },
    /// The body size is not one this opcode allows.
    BodySize {
        /// The opcode byte.
        opcode: u8,
        /// The body's size, in bytes.
        size: usize,
    },
    /// A field holds a value outside its domain (an unknown enum byte, a non-zero padding
    /// byte, a boolean other than 0 or 1, a count over its limit, ...).
    InvalidField {
        /// The field, as named in `docs/protocol.md`.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A text field is not valid UTF-8.
    InvalidUtf8 {
        /// The field, as named in `docs/protocol.md`.
        field: &'static str,
    },
    /// A push frame carries a request id other than 0.
    PushRequestId {
        /// The request id found.
        request_id: u32,
    },
}

impl ProtocolError {
    /// The wire code to send back for this error.
    pub const fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtocolError::UnknownOpcode { .. } => ErrorCode::UnknownOpcode,
            ProtocolError::ReservedNotZero { .. } | ProtocolError::InvalidFlags { .. } => ErrorCode::ReservedBits,
            ProtocolError::LengthTooSmall { .. }
            | ProtocolError::LengthMismatch { .. }
            | ProtocolError::BodySize { .. }
            | ProtocolError::InvalidField { .. }
            | ProtocolError::InvalidUtf8 { .. }
            | ProtocolError::PushRequestId { .. } => ErrorCode::MalformedFrame,
        }
    }

    /// Returns true if and only if the server closes the connection after reporting
    /// this error.
    pub const fn closes_connection(&self) -> bool {
        self.code().closes_connection()
    }
}

/// The opcode's name when it has one, so messages say "MOVE" rather than a number.
struct OpcodeName(u8);

impl fmt::Display for OpcodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let byte = self.0;
        let request = Opcode::from_u8(byte & !super::opcode::REPLY_BIT).filter(|opcode| opcode.is_request());
        match (Opcode::from_u8(byte), request) {
            (Some(opcode), _) => write!(f, "{} (0x{byte:02X})", opcode.name()),
            (None, Some(opcode)) if byte & super::opcode::REPLY_BIT != 0 => {
                write!(f, "{} reply (0x{byte:02X})", opcode.name())
            }
            _ => write!(f, "0x{byte:02X}"),
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProtocolError::LengthTooSmall { length } => {
                write!(f, "malformed frame: length {length} is below the 12-byte header")
            }
            ProtocolError::FrameTooLarge { length } => {
                let max = crate::constants::FRAME_SIZE_MAX;
                write!(f, "frame too large: length {length} exceeds the maximum of {max} bytes")
            }
            ProtocolError::LengthMismatch { length, size } => {
                write!(f, "malformed frame: length field says {length} bytes but the frame holds {size}")
            }
            ProtocolError::UnknownOpcode { opcode } => write!(f, "unknown opcode {}", OpcodeName(opcode)),
            ProtocolError::ReservedNotZero { reserved } => {
                write!(f, "reserved header field must be 0, found 0x{reserved:04X}")
            }
            ProtocolError::InvalidFlags { opcode, flags } => {
                write!(f, "flags 0x{flags:02X} are not valid for opcode {}", OpcodeName(opcode))
            }
            ProtocolError::BodySize { opcode, size } => {
                write!(f, "malformed frame: a body of {size} bytes is not valid for opcode {}", OpcodeName(opcode))
            }
            ProtocolError::InvalidField { field, value } => {
                write!(f, "malformed frame: invalid value {value} for field {field}")
            }
            ProtocolError::InvalidUtf8 { field } => write!(f, "malformed frame: field {field} is not valid UTF-8"),
            ProtocolError::PushRequestId { request_id } => {
                write!(f, "malformed frame: a push must carry request id 0, found {request_id}")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_stay_below_the_state_machine_range() {
        for (index, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.to_u16() as usize, index + 1);
            assert_eq!(ErrorCode::from_u16(code.to_u16()), Some(*code));
            assert!(code.to_u16() < 100);
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert_eq!(ErrorCode::from_u16(ErrorCode::COUNT as u16 + 1), None);
        assert_eq!(ErrorCode::from_u16(125), None);
    }

    #[test]
    fn framing_errors_close_and_request_errors_do_not() {
        let check = |error: ProtocolError, code: ErrorCode, closes: bool| {
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(error.closes_connection(), closes, "{error:?}");
        };
        check(ProtocolError::LengthTooSmall { length: 11 }, ErrorCode::MalformedFrame, true);
        check(ProtocolError::FrameTooLarge { length: 1 << 20 }, ErrorCode::FrameTooLarge, true);
        check(ProtocolError::UnknownOpcode { opcode: 0x33 }, ErrorCode::UnknownOpcode, true);
        check(ProtocolError::BodySize { opcode: 0x17, size: 21 }, ErrorCode::MalformedFrame, true);
        check(ProtocolError::ReservedNotZero { reserved: 1 }, ErrorCode::ReservedBits, false);
        check(ProtocolError::InvalidFlags { opcode: 0x17, flags: 2 }, ErrorCode::ReservedBits, false);
    }

    #[test]
    fn messages_name_the_opcode() {
        let check = |error: ProtocolError, expected: &str| assert_eq!(error.to_string(), expected);
        check(
            ProtocolError::BodySize { opcode: 0x17, size: 21 },
            "malformed frame: a body of 21 bytes is not valid for opcode MOVE (0x17)",
        );
        check(ProtocolError::UnknownOpcode { opcode: 0x97 }, "unknown opcode MOVE reply (0x97)");
        check(ProtocolError::UnknownOpcode { opcode: 0x33 }, "unknown opcode 0x33");
        check(ProtocolError::LengthTooSmall { length: 11 }, "malformed frame: length 11 is below the 12-byte header");
    }
}
