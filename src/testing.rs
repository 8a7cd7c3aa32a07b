//! Helpers for the crate's own unit tests.

use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system's temporary directory, named after the
/// test and the process; removed with everything in it when dropped, so also when the
/// test fails.
pub(crate) struct TemporaryDir(PathBuf);

impl TemporaryDir {
    pub(crate) fn new(name: &str) -> TemporaryDir {
        let dir = std::env::temp_dir().join(format!("cairn-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the temporary directory can be created");
        TemporaryDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
