//! Deterministic random numbers. (Stub: being written.)
