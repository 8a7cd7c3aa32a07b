//! The fixed-width field reader of the byte formats the fuzz targets decode
//! (`tests/model/harness.rs` for events, `tests/props/leaderboard.rs` for the leaderboard):
//! each format adds its own fields on top, in an `impl Reader` of its own.

/// Reads fixed-width little-endian fields; past the end, every byte is zero, so any input
/// decodes.
pub struct Reader<'a> {
    pub bytes: &'a [u8],
}

impl Reader<'_> {
    pub fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut field = [0; N];
        let size = N.min(self.bytes.len());
        field[..size].copy_from_slice(&self.bytes[..size]);
        self.bytes = &self.bytes[size..];
        field
    }

    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}
