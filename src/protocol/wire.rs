//! Little-endian field access at fixed byte offsets: the only place the codec turns
//! integers into bytes and back.
//!
//! Every body layout in this module is a set of chained offset constants, and both the
//! encoder and the decoder of a body go through these helpers with the same constants,
//! so the two cannot drift apart. Readers take a slice whose length the caller has
//! already checked against the layout's size; an out-of-range offset is therefore a bug
//! in a layout, not bad input, and panics. Byte order is always explicit
//! (`from_le_bytes`/`to_le_bytes`), never the host's.

/// Size of a `u8` field, in bytes.
pub(crate) const U8: usize = size_of::<u8>();
/// Size of a `u16` field, in bytes.
pub(crate) const U16: usize = size_of::<u16>();
/// Size of a `u32` or `i32` field, in bytes.
pub(crate) const U32: usize = size_of::<u32>();
/// Size of a `u64` or `i64` field, in bytes.
pub(crate) const U64: usize = size_of::<u64>();

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut array = [0; N];
    array.copy_from_slice(&bytes[at..at + N]);
    array
}

pub(crate) fn get_u8(bytes: &[u8], at: usize) -> u8 {
    bytes[at]
}

pub(crate) fn get_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(array(bytes, at))
}

pub(crate) fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(bytes, at))
}

pub(crate) fn get_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(array(bytes, at))
}

pub(crate) fn get_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(bytes, at))
}

pub(crate) fn get_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(array(bytes, at))
}

pub(crate) fn put_u8(bytes: &mut [u8], at: usize, value: u8) {
    bytes[at] = value;
}

pub(crate) fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + U16].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + U32].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_i32(bytes: &mut [u8], at: usize, value: i32) {
    bytes[at..at + U32].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + U64].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_i64(bytes: &mut [u8], at: usize, value: i64) {
    bytes[at..at + U64].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_little_endian_whatever_the_host() {
        let mut bytes = [0u8; 8];
        put_u32(&mut bytes, 0, 0x0403_0201);
        assert_eq!(bytes[..4], [1, 2, 3, 4]);
        put_i32(&mut bytes, 4, -2);
        assert_eq!(bytes[4..], [0xFE, 0xFF, 0xFF, 0xFF]);
        assert_eq!(get_u16(&bytes, 0), 0x0201);
        assert_eq!(get_i32(&bytes, 4), -2);
        put_i64(&mut bytes, 0, -1);
        assert_eq!(get_u64(&bytes, 0), u64::MAX);
        put_u8(&mut bytes, 7, 0x7F);
        assert_eq!(get_i64(&bytes, 0), i64::MAX);
        put_u16(&mut bytes, 0, 0xBEEF);
        assert_eq!(get_u8(&bytes, 0), 0xEF);
        put_u64(&mut bytes, 0, 0x0807_0605_0403_0201);
        assert_eq!(bytes, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(get_u32(&bytes, 4), 0x0807_0605);
    }
}
