//! The fixed-width field reader of the byte formats the fuzz targets decode
//! (`tests/model/harness.rs` for events, `tests/props/leaderboard.rs` for the leaderboard):
//! each format adds its own fields on top, in an `impl Reader` of its own; and the check
//! both formats' round-trip tests make of a drawn case.

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

/// Checks that `decoded` is `drawn`, item by item (case `index` of the strategy `name`),
/// and writes the case's `bytes` to `seed_dir/name-index` if a seed directory is given.
pub fn check_round_trip<T: PartialEq + std::fmt::Debug>(
    name: &str,
    index: usize,
    drawn: &[T],
    decoded: &[T],
    bytes: &[u8],
    seed_dir: Option<&std::path::Path>,
) {
    assert_eq!(decoded.len(), drawn.len(), "{name} case {index}");
    for (at, (decoded, drawn)) in decoded.iter().zip(drawn).enumerate() {
        assert_eq!(decoded, drawn, "{name} case {index}, item {at}");
    }
    if let Some(dir) = seed_dir {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}-{index}")), bytes).unwrap();
    }
}
