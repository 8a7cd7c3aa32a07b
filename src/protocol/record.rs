//! Records that several bodies embed (a position, a claim, a leaderboard line, a text
//! field) and the field checks every decoder shares.
//!
//! Each record is a fixed layout of chained offsets with a `SIZE`, encoded into and
//! decoded from a slice at a base offset, so a body layout embeds a record by giving it
//! an offset and reserving `SIZE` bytes. Text is written through [`BoundedText`], which
//! formats a `Display` value straight into the output buffer and cuts it on a character
//! boundary at its limit: no temporary `String` on the server path.

use std::fmt;

use crate::event::Position;
use crate::outcome::{Claim, Ranked};

use super::error::ProtocolError;
use super::wire::{get_i32, get_i64, get_u16, get_u32, get_u64, get_u8, put_i32, put_i64, put_u16, put_u32, put_u64};
use super::wire::{U16, U32, U64};

/// A [`Position`]: `x i32, y i32`.
pub(crate) mod position {
    use super::*;

    pub(crate) const X: usize = 0;
    pub(crate) const Y: usize = X + U32;
    pub(crate) const SIZE: usize = Y + U32;

    pub(crate) fn put(bytes: &mut [u8], at: usize, position: Position) {
        put_i32(bytes, at + X, position.x);
        put_i32(bytes, at + Y, position.y);
    }

    pub(crate) fn get(bytes: &[u8], at: usize) -> Position {
        Position { x: get_i32(bytes, at + X), y: get_i32(bytes, at + Y) }
    }
}

/// A [`Claim`]: `treasure u32, index u32, capacity u32, points u32, score i64, rank u32`.
pub(crate) mod claim {
    use super::*;

    pub(crate) const TREASURE: usize = 0;
    pub(crate) const INDEX: usize = TREASURE + U32;
    pub(crate) const CAPACITY: usize = INDEX + U32;
    pub(crate) const POINTS: usize = CAPACITY + U32;
    pub(crate) const SCORE: usize = POINTS + U32;
    pub(crate) const RANK: usize = SCORE + U64;
    pub(crate) const SIZE: usize = RANK + U32;

    pub(crate) fn put(bytes: &mut [u8], at: usize, claim: &Claim) {
        put_u32(bytes, at + TREASURE, claim.treasure);
        put_u32(bytes, at + INDEX, claim.index);
        put_u32(bytes, at + CAPACITY, claim.capacity);
        put_u32(bytes, at + POINTS, claim.points);
        put_i64(bytes, at + SCORE, claim.score);
        put_u32(bytes, at + RANK, claim.rank);
    }

    pub(crate) fn get(bytes: &[u8], at: usize) -> Claim {
        Claim {
            treasure: get_u32(bytes, at + TREASURE),
            index: get_u32(bytes, at + INDEX),
            capacity: get_u32(bytes, at + CAPACITY),
            points: get_u32(bytes, at + POINTS),
            score: get_i64(bytes, at + SCORE),
            rank: get_u32(bytes, at + RANK),
        }
    }
}

/// A [`Ranked`] leaderboard line: `rank u32, player u32, score i64, reached_at u64`.
pub(crate) mod ranked {
    use super::*;

    pub(crate) const RANK: usize = 0;
    pub(crate) const PLAYER: usize = RANK + U32;
    pub(crate) const SCORE: usize = PLAYER + U32;
    pub(crate) const REACHED_AT: usize = SCORE + U64;
    pub(crate) const SIZE: usize = REACHED_AT + U64;

    pub(crate) fn put(bytes: &mut [u8], at: usize, ranked: &Ranked) {
        put_u32(bytes, at + RANK, ranked.rank);
        put_u32(bytes, at + PLAYER, ranked.player);
        put_i64(bytes, at + SCORE, ranked.score);
        put_u64(bytes, at + REACHED_AT, ranked.reached_at);
    }

    pub(crate) fn get(bytes: &[u8], at: usize) -> Ranked {
        Ranked {
            rank: get_u32(bytes, at + RANK),
            player: get_u32(bytes, at + PLAYER),
            score: get_i64(bytes, at + SCORE),
            reached_at: get_u64(bytes, at + REACHED_AT),
        }
    }
}

/// A coded message, as ERROR and GOODBYE bodies carry it: `code u16, message_length u16,
/// message [u8; message_length]` (UTF-8).
pub(crate) mod message {
    use super::*;

    pub(crate) const CODE: usize = 0;
    pub(crate) const LENGTH: usize = CODE + U16;
    pub(crate) const TEXT: usize = LENGTH + U16;

    /// Appends a coded message, formatting `text` into `out` and cutting it at `max`
    /// bytes on a character boundary.
    pub(crate) fn append(out: &mut Vec<u8>, code: u16, text: &dyn fmt::Display, max: usize) {
        let start = out.len();
        let mut fixed = [0; TEXT];
        put_u16(&mut fixed, CODE, code);
        out.extend_from_slice(&fixed);
        let size = BoundedText::append(out, text, max);
        put_u16(&mut out[start..], LENGTH, size as u16);
    }

    /// Reads a coded message filling the whole of `body`; the text must be valid UTF-8
    /// of at most `max` bytes.
    pub(crate) fn get<'a>(
        body: &'a [u8],
        opcode: u8,
        max: usize,
        field: &'static str,
    ) -> Result<(u16, &'a str), ProtocolError> {
        if body.len() < TEXT {
            return Err(ProtocolError::BodySize { opcode, size: body.len() });
        }
        let size = get_u16(body, LENGTH) as usize;
        if size > max {
            return Err(ProtocolError::InvalidField { field, value: size as u64 });
        }
        if body.len() != TEXT + size {
            return Err(ProtocolError::BodySize { opcode, size: body.len() });
        }
        let text = std::str::from_utf8(&body[TEXT..]).map_err(|_| ProtocolError::InvalidUtf8 { field })?;
        Ok((get_u16(body, CODE), text))
    }
}

/// A `fmt::Write` sink that appends to a byte buffer and silently drops what does not
/// fit within its limit, cutting on a UTF-8 character boundary.
pub(crate) struct BoundedText<'a> {
    out: &'a mut Vec<u8>,
    room: usize,
}

impl BoundedText<'_> {
    /// Appends `text` to `out`, at most `max` bytes of it; returns the bytes appended.
    pub(crate) fn append(out: &mut Vec<u8>, text: &dyn fmt::Display, max: usize) -> usize {
        let start = out.len();
        let mut sink = BoundedText { out, room: max };
        // Our sink never fails, so an error can only come from a `Display` impl that
        // reports one; whatever it wrote so far is still a valid, truncated message.
        let _ = fmt::write(&mut sink, format_args!("{text}"));
        out.len() - start
    }
}

impl fmt::Write for BoundedText<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut size = text.len().min(self.room);
        while !text.is_char_boundary(size) {
            size -= 1;
        }
        self.out.extend_from_slice(&text.as_bytes()[..size]);
        self.room -= size;
        Ok(())
    }
}

/// Reads a boolean byte, which must be 0 or 1.
pub(crate) fn get_bool(bytes: &[u8], at: usize, field: &'static str) -> Result<bool, ProtocolError> {
    match get_u8(bytes, at) {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(ProtocolError::InvalidField { field, value: value as u64 }),
    }
}

/// Checks that a padding byte is 0, so that every accepted frame encodes one way only.
pub(crate) fn check_zero(bytes: &[u8], at: usize, field: &'static str) -> Result<(), ProtocolError> {
    match get_u8(bytes, at) {
        0 => Ok(()),
        value => Err(ProtocolError::InvalidField { field, value: value as u64 }),
    }
}

/// Checks that a fixed-size body has exactly the layout's size.
pub(crate) fn check_size(body: &[u8], opcode: u8, size: usize) -> Result<(), ProtocolError> {
    if body.len() == size {
        Ok(())
    } else {
        Err(ProtocolError::BodySize { opcode, size: body.len() })
    }
}

/// Checks a list body `fixed` bytes of fields then `count` records of `record` bytes,
/// with `count` at most `max`; returns the count.
pub(crate) fn check_list(
    body: &[u8],
    opcode: u8,
    fixed: usize,
    count_at: usize,
    record: usize,
    max: usize,
) -> Result<usize, ProtocolError> {
    if body.len() < fixed {
        return Err(ProtocolError::BodySize { opcode, size: body.len() });
    }
    let count = get_u32(body, count_at) as usize;
    if count > max {
        return Err(ProtocolError::InvalidField { field: "count", value: count as u64 });
    }
    if body.len() != fixed + count * record {
        return Err(ProtocolError::BodySize { opcode, size: body.len() });
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(text: &dyn fmt::Display, max: usize) -> String {
        let mut out = b"prefix".to_vec();
        let size = BoundedText::append(&mut out, text, max);
        assert_eq!(size, out.len() - 6);
        String::from_utf8(out[6..].to_vec()).unwrap()
    }

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        assert_eq!(bounded(&"hello", 10), "hello");
        assert_eq!(bounded(&"hello", 5), "hello");
        assert_eq!(bounded(&"hello", 3), "hel");
        assert_eq!(bounded(&"héllo", 2), "h");
        assert_eq!(bounded(&"héllo", 3), "hé");
        assert_eq!(bounded(&"日本", 5), "日");
        assert_eq!(bounded(&"日本", 0), "");
        assert_eq!(bounded(&format_args!("{}-{}", 12, "ab"), 4), "12-a");
    }

    #[test]
    fn records_fill_their_size() {
        assert_eq!(position::SIZE, 8);
        assert_eq!(claim::SIZE, 28);
        assert_eq!(ranked::SIZE, 24);
        let claim = Claim { treasure: 1, index: 2, capacity: 3, points: 4, score: -5, rank: 6 };
        let mut bytes = [0; claim::SIZE + 1];
        claim::put(&mut bytes, 1, &claim);
        assert_eq!(claim::get(&bytes, 1), claim);
        assert_eq!(bytes[0], 0);
    }
}
