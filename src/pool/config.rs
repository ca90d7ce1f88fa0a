//! `Config`: a pool's settings, as its builder leaves them and its driver
//! threads and helper starts read them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Settings shared by the coordinator's driver threads.
pub(crate) struct Config {
    pub helpers: usize,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub max_tasks: Option<usize>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub init: Option<(u32, Vec<u8>)>,
    pub pipeline: usize,
    pub start_timeout: Duration,
    pub quiet: bool,
    /// Helpers' output through line relays (see `start::relay`).
    pub relay_output: bool,
    /// The `#[test]` the pool is built in, whose thread alone may serve.
    pub test: Option<String>,
}
