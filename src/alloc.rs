//! Counting global allocator. (Stub: being written.)

/// Stub scope.
pub struct Scope;
impl Scope {
    /// Stub.
    pub fn start() -> Scope {
        Scope
    }
    /// Stub.
    pub fn allocations(&self) -> u64 {
        0
    }
}
