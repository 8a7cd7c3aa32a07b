//! Seeded simulation. (Stub: being written.)
