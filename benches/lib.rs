//! The benchmarks' shared part: where this workspace keeps its build
//! output, so that a bench finds the binaries cargo built, also with
//! `CARGO_TARGET_DIR` set.

use std::path::PathBuf;

/// The workspace's target directory: `CARGO_TARGET_DIR` if set, else
/// `target/` beside the workspace's manifest.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace().join("target"),
    }
}

/// The workspace's root (this crate's parent).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("benches/ sits in the workspace").to_path_buf()
}
