//! The Python columns: `stream.py` in the benches' venv (numpy and this
//! tree's shmkit package), `multiprocessing.Queue` and shmkit's Python
//! streams measured the way the Rust rows are.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use shmkit_bench::{samples, Python};

use crate::{Samples, Sizes};

/// One round of `stream.py`: latencies (µs) and throughputs (frames/s) per key.
pub fn round(py: &Python, s: &Sizes) -> Result<(Samples, Samples)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("stream.py");
    let args = ["--frames".to_owned(), s.python_frames.to_string(), "--bulk".into(), (s.bulk / 4).max(20).to_string()];
    let json = py.json(&script, &args, Duration::from_secs(600))?;
    Ok((samples(&json["latency"])?, samples(&json["throughput"])?))
}
