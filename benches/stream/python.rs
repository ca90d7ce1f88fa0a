//! The Python columns: `stream.py` in the benches' venv (numpy and this
//! tree's shmkit package), `multiprocessing.Queue` and shmkit's Python
//! streams measured the way the Rust rows are.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::{Samples, Sizes};

/// The interpreter and its versions.
pub struct Python {
    exe: PathBuf,
    pub version: String,
}

impl Python {
    /// Sets up the venv; an error says why there is none.
    pub fn find() -> Result<Python> {
        let exe = shmkit_bench::python()?;
        let code = "import sys, numpy; print(f'Python {sys.version.split()[0]}, numpy {numpy.__version__}')";
        let out = Command::new(&exe).args(["-c", code]).output()?;
        ensure!(out.status.success(), "python3 with numpy does not run");
        Ok(Python { exe, version: String::from_utf8_lossy(&out.stdout).trim().to_owned() })
    }

    /// One round of `stream.py`: latencies (µs) and throughputs (frames/s) per key.
    pub fn round(&self, s: &Sizes) -> Result<(Samples, Samples)> {
        let child = Command::new(&self.exe)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("stream.py"))
            .args(["--frames", &s.python_frames.to_string(), "--bulk", &(s.bulk / 4).max(20).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let out = wait(child, Duration::from_secs(600))?;
        ensure!(out.status.success(), "stream.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).context("stream.py's output")?;
        Ok((samples(&json["latency"])?, samples(&json["throughput"])?))
    }
}

/// `{"key": [numbers]}` as samples.
fn samples(v: &serde_json::Value) -> Result<Samples> {
    let map = v.as_object().context("an object of samples")?;
    Ok(map
        .iter()
        .map(|(k, v)| (k.clone(), v.as_array().into_iter().flatten().filter_map(|x| x.as_f64()).collect()))
        .collect())
}

/// Waits for `child`, killing it after `limit`.
fn wait(mut child: std::process::Child, limit: Duration) -> Result<std::process::Output> {
    let start = Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > limit {
            child.kill()?;
            bail!("stream.py still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.wait_with_output()?)
}
