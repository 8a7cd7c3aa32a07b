//! Counting global allocator. (Stub: being written.)
