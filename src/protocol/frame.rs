//! The 12-byte frame header, the flag bits, and splitting a byte stream into frames.
//!
//! ```text
//! offset  size  field
//!      0     4  length      u32  whole frame, header included, in bytes
//!      4     1  opcode      u8
//!      5     1  flags       u8
//!      6     2  reserved    u16  must be 0
//!      8     4  request_id  u32  0 in pushes
//!     12     .  body
//! ```
//!
//! Framing only trusts the length field: [`check_header`] rejects a length below the
//! header size or above `FRAME_SIZE_MAX` as soon as the first four bytes are in, before
//! the reader waits for (or allocates room for) the rest of the frame. Opcode, flags and
//! the reserved field are the decoders' business, so a framing error always means the
//! stream can no longer be trusted. Encoders reserve the header, append the body and
//! patch the length last ([`begin_frame`], [`finish_frame`]), so no body is ever copied.

use crate::constants::{FRAME_HEADER_SIZE, FRAME_SIZE_MAX};

use super::error::ProtocolError;
use super::wire::{get_u16, get_u32, get_u8, put_u16, put_u32, put_u8, U16, U32, U8};

/// Offset of the `length` field.
pub(crate) const LENGTH_OFFSET: usize = 0;
/// Offset of the `opcode` field.
pub(crate) const OPCODE_OFFSET: usize = LENGTH_OFFSET + U32;
/// Offset of the `flags` field.
pub(crate) const FLAGS_OFFSET: usize = OPCODE_OFFSET + U8;
/// Offset of the `reserved` field.
pub(crate) const RESERVED_OFFSET: usize = FLAGS_OFFSET + U8;
/// Offset of the `request_id` field.
pub(crate) const REQUEST_ID_OFFSET: usize = RESERVED_OFFSET + U16;
/// Offset of the body.
pub(crate) const BODY_OFFSET: usize = REQUEST_ID_OFFSET + U32;

const _: () = assert!(BODY_OFFSET == FRAME_HEADER_SIZE);

/// Flag bit 0, on MOVE requests only: reply only if the move claimed something or was
/// rejected. Quiet moves that claim nothing get no reply at all.
pub const FLAG_QUIET: u8 = 1 << 0;

/// Flag bit 1, on STATS requests only: after answering, start a new allocation mark, so
/// the next STATS reports allocations per event since this one. Without it, STATS only
/// reads.
pub const FLAG_MARK: u8 = 1 << 1;

/// Flag bit 7, on every push and only on pushes: the frame was not asked for, and its
/// request id is 0.
pub const FLAG_PUSH: u8 = 1 << 7;

/// A parsed frame header. Parsing checks nothing but the length; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// The whole frame's size, header included, in bytes.
    pub length: u32,
    /// The opcode byte (a reply's has [`super::opcode::REPLY_BIT`] set).
    pub opcode: u8,
    /// The flag bits.
    pub flags: u8,
    /// Must be 0; the decoders reject anything else.
    pub reserved: u16,
    /// The request's id, echoed in its reply; 0 in pushes.
    pub request_id: u32,
}

impl FrameHeader {
    /// Reads the header fields from the first 12 bytes, without checking them.
    pub fn parse(bytes: &[u8; FRAME_HEADER_SIZE]) -> FrameHeader {
        FrameHeader {
            length: get_u32(bytes, LENGTH_OFFSET),
            opcode: get_u8(bytes, OPCODE_OFFSET),
            flags: get_u8(bytes, FLAGS_OFFSET),
            reserved: get_u16(bytes, RESERVED_OFFSET),
            request_id: get_u32(bytes, REQUEST_ID_OFFSET),
        }
    }

    /// The header's 12 bytes.
    pub fn encode(&self) -> [u8; FRAME_HEADER_SIZE] {
        let mut bytes = [0; FRAME_HEADER_SIZE];
        put_u32(&mut bytes, LENGTH_OFFSET, self.length);
        put_u8(&mut bytes, OPCODE_OFFSET, self.opcode);
        put_u8(&mut bytes, FLAGS_OFFSET, self.flags);
        put_u16(&mut bytes, RESERVED_OFFSET, self.reserved);
        put_u32(&mut bytes, REQUEST_ID_OFFSET, self.request_id);
        bytes
    }

    /// The body's size, in bytes; the header must have passed [`check_header`].
    pub fn body_size(&self) -> usize {
        assert!(self.length as usize >= FRAME_HEADER_SIZE);
        self.length as usize - FRAME_HEADER_SIZE
    }
}

/// Checks the length field of the frame starting at `bytes[0]`.
///
/// Returns `Ok(None)` while fewer than 12 bytes are available. An oversize length is
/// rejected as soon as the length field itself is in, so a reader never waits for (or
/// buffers) a frame it would refuse. The returned header's length is within
/// `FRAME_HEADER_SIZE..=FRAME_SIZE_MAX`; the body may not have arrived yet.
pub fn check_header(bytes: &[u8]) -> Result<Option<FrameHeader>, ProtocolError> {
    if bytes.len() >= U32 {
        check_length(get_u32(bytes, LENGTH_OFFSET))?;
    }
    match bytes.first_chunk::<FRAME_HEADER_SIZE>() {
        Some(header) => Ok(Some(FrameHeader::parse(header))),
        None => Ok(None),
    }
}

fn check_length(length: u32) -> Result<(), ProtocolError> {
    if (length as usize) < FRAME_HEADER_SIZE {
        return Err(ProtocolError::LengthTooSmall { length });
    }
    if length as usize > FRAME_SIZE_MAX {
        return Err(ProtocolError::FrameTooLarge { length: length as u64 });
    }
    Ok(())
}

/// The size of the complete frame at the start of `buffer`, or `Ok(None)` if more
/// bytes are needed. An error means the stream cannot be framed and must be closed.
pub fn next_frame(buffer: &[u8]) -> Result<Option<usize>, ProtocolError> {
    match check_header(buffer)? {
        Some(header) if buffer.len() >= header.length as usize => Ok(Some(header.length as usize)),
        _ => Ok(None),
    }
}

/// The request id of a frame whose header is in `frame`, or 0 if the header is not
/// all there: the id to put in an error frame about it.
pub fn request_id_of(frame: &[u8]) -> u32 {
    match frame.first_chunk::<FRAME_HEADER_SIZE>() {
        Some(header) => FrameHeader::parse(header).request_id,
        None => 0,
    }
}

/// Splits a read buffer into its complete frames, in order, without copying.
///
/// After iterating, [`Frames::consumed`] says how many leading bytes held complete
/// frames (the caller discards them and keeps the partial tail). After an error the
/// iterator ends; the error is the last item.
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    buffer: &'a [u8],
    consumed: usize,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// Frames of `buffer`, starting at its first byte.
    pub fn new(buffer: &'a [u8]) -> Frames<'a> {
        Frames { buffer, consumed: 0, failed: false }
    }

    /// Bytes of complete frames handed out so far.
    pub fn consumed(&self) -> usize {
        self.consumed
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<&'a [u8], ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = &self.buffer[self.consumed..];
        match next_frame(rest) {
            Ok(Some(size)) => {
                self.consumed += size;
                Some(Ok(&rest[..size]))
            }
            Ok(None) => None,
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// Appends a header with a zero length and returns the frame's start; the body follows
/// and [`finish_frame`] patches the length.
pub(crate) fn begin_frame(out: &mut Vec<u8>, opcode: u8, flags: u8, request_id: u32) -> usize {
    let start = out.len();
    let header = FrameHeader { length: 0, opcode, flags, reserved: 0, request_id };
    out.extend_from_slice(&header.encode());
    start
}

/// Patches the length of the frame begun at `start`, now that its body is appended.
pub(crate) fn finish_frame(out: &mut [u8], start: usize) {
    let length = out.len() - start;
    assert!(length >= FRAME_HEADER_SIZE);
    assert!(length <= FRAME_SIZE_MAX, "an encoder built a {length}-byte frame");
    put_u32(&mut out[start..], LENGTH_OFFSET, length as u32);
}

/// Appends a whole frame whose body is fixed-size.
pub(crate) fn append_frame(out: &mut Vec<u8>, opcode: u8, flags: u8, request_id: u32, body: &[u8]) {
    let start = begin_frame(out, opcode, flags, request_id);
    out.extend_from_slice(body);
    finish_frame(out, start);
}

/// Checks what every decoder checks first: `frame` is exactly one frame, within
/// limits. Returns the header and the body. The decoder checks the opcode next and the
/// reserved field ([`check_reserved`]) after it, so a frame that is no message at all is
/// refused as such (and the connection closed) whatever its reserved bits hold.
pub(crate) fn split_frame(frame: &[u8]) -> Result<(FrameHeader, &[u8]), ProtocolError> {
    let header = match check_header(frame)? {
        Some(header) => header,
        None => return Err(ProtocolError::LengthMismatch { length: frame_length_hint(frame), size: frame.len() }),
    };
    if header.length as usize != frame.len() {
        return Err(ProtocolError::LengthMismatch { length: header.length, size: frame.len() });
    }
    Ok((header, &frame[FRAME_HEADER_SIZE..]))
}

/// Checks that the header's reserved field is clear, once its opcode is known to be one
/// the decoder accepts.
pub(crate) fn check_reserved(header: &FrameHeader) -> Result<(), ProtocolError> {
    match header.reserved {
        0 => Ok(()),
        reserved => Err(ProtocolError::ReservedNotZero { reserved }),
    }
}

/// The length field of a frame shorter than a header, as far as it is there, for the
/// error message.
fn frame_length_hint(frame: &[u8]) -> u32 {
    let mut length = [0; U32];
    let available = frame.len().min(U32);
    length[..available].copy_from_slice(&frame[..available]);
    u32::from_le_bytes(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(length: u32) -> [u8; FRAME_HEADER_SIZE] {
        FrameHeader { length, opcode: 0x02, flags: 0, reserved: 0, request_id: 7 }.encode()
    }

    #[test]
    fn header_limits_are_checked_from_the_header_alone() {
        let check = |length: u32, expected: Result<Option<u32>, ProtocolError>| {
            let bytes = header_bytes(length);
            let actual = check_header(&bytes).map(|header| header.map(|header| header.length));
            assert_eq!(actual, expected, "length {length}");
        };
        check(0, Err(ProtocolError::LengthTooSmall { length: 0 }));
        check(11, Err(ProtocolError::LengthTooSmall { length: 11 }));
        check(12, Ok(Some(12)));
        check(FRAME_SIZE_MAX as u32, Ok(Some(FRAME_SIZE_MAX as u32)));
        check(FRAME_SIZE_MAX as u32 + 1, Err(ProtocolError::FrameTooLarge { length: FRAME_SIZE_MAX as u64 + 1 }));
        check(u32::MAX, Err(ProtocolError::FrameTooLarge { length: u32::MAX as u64 }));
    }

    #[test]
    fn an_oversize_length_is_refused_before_the_header_is_complete() {
        let bytes = header_bytes(FRAME_SIZE_MAX as u32 + 1);
        assert_eq!(check_header(&bytes[..3]), Ok(None));
        assert!(check_header(&bytes[..4]).is_err());
        assert_eq!(next_frame(&bytes[..4]), Err(ProtocolError::FrameTooLarge { length: FRAME_SIZE_MAX as u64 + 1 }));
    }

    #[test]
    fn next_frame_waits_for_the_whole_frame() {
        let mut bytes = header_bytes(16).to_vec();
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(next_frame(&[]), Ok(None));
        assert_eq!(next_frame(&bytes[..11]), Ok(None));
        assert_eq!(next_frame(&bytes), Ok(None));
        bytes.push(4);
        assert_eq!(next_frame(&bytes), Ok(Some(16)));
        bytes.push(5);
        assert_eq!(next_frame(&bytes), Ok(Some(16)));
    }

    #[test]
    fn frames_split_a_buffer_and_keep_the_partial_tail() {
        let mut buffer = Vec::new();
        append_frame(&mut buffer, 0x02, 0, 1, &[]);
        append_frame(&mut buffer, 0x11, 0, 2, &[9, 9, 9, 9]);
        append_frame(&mut buffer, 0x02, 0, 3, &[]);
        let whole = buffer.len();
        buffer.truncate(whole - 1);
        let mut frames = Frames::new(&buffer);
        let ids: Vec<u32> = frames.by_ref().map(|frame| request_id_of(frame.unwrap())).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(frames.consumed(), 12 + 16);
    }

    #[test]
    fn frames_stop_after_an_error() {
        let mut buffer = Vec::new();
        append_frame(&mut buffer, 0x02, 0, 1, &[]);
        buffer.extend_from_slice(&header_bytes(3));
        append_frame(&mut buffer, 0x02, 0, 3, &[]);
        let items: Vec<_> = Frames::new(&buffer).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1], Err(ProtocolError::LengthTooSmall { length: 3 }));
    }

    #[test]
    fn the_header_round_trips_field_by_field() {
        let header = FrameHeader { length: 0x0102_0304, opcode: 0x97, flags: 0x81, reserved: 0xA0B0, request_id: 9 };
        let bytes = header.encode();
        assert_eq!(bytes, [0x04, 0x03, 0x02, 0x01, 0x97, 0x81, 0xB0, 0xA0, 9, 0, 0, 0]);
        assert_eq!(FrameHeader::parse(&bytes), header);
        assert_eq!(request_id_of(&bytes), 9);
        assert_eq!(request_id_of(&bytes[..11]), 0);
    }
}
