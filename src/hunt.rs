//! Per-hunt state. (Stub: being written.)
