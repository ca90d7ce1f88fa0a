//! Running `benches/compare.py` with a numpy it sets up itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::{Samples, Sizes};

/// A python3 that can import numpy: the system one, or a venv under
/// `target/bench-venv` made and filled on first use.
fn python() -> Result<PathBuf> {
    let ok = |py: &Path| {
        Command::new(py).args(["-c", "import numpy"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if Command::new(&system).arg("--version").stdout(Stdio::null()).status().is_err() {
        bail!("python3 is not installed");
    }
    if ok(&system) {
        return Ok(system);
    }
    let venv = shmkit_bench::target_dir().join("bench-venv");
    let py = venv.join("bin/python");
    if !ok(&py) {
        eprintln!("compare: installing numpy into {}", venv.display());
        ensure!(Command::new("python3").arg("-m").arg("venv").arg(&venv).status()?.success(), "python3 -m venv failed");
        let pip = Command::new(&py).args(["-m", "pip", "install", "--quiet", "numpy"]).status()?;
        ensure!(pip.success(), "pip install numpy failed");
    }
    Ok(py)
}

/// The Python side: an interpreter with numpy, and its versions.
pub struct Python {
    exe: PathBuf,
    pub version: String,
}

impl Python {
    /// Finds (or sets up) python3 with numpy; an error says why there is none.
    pub fn find() -> Result<Python> {
        let exe = python()?;
        let code = "import sys, numpy; print(f'Python {sys.version.split()[0]}, numpy {numpy.__version__}')";
        let out = Command::new(&exe).args(["-c", code]).output()?;
        ensure!(out.status.success(), "python3 with numpy does not run");
        Ok(Python { exe, version: String::from_utf8_lossy(&out.stdout).trim().to_owned() })
    }

    /// One round of `benches/compare.py` (its own warm-up, then one run of
    /// each workload): per-workload samples.
    pub fn round(&self, s: &Sizes, limit: Duration) -> Result<HashMap<String, Samples>> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("compare.py");
        let mut cmd = Command::new(&self.exe);
        cmd.arg(script).args(["--helpers", &s.helpers.to_string(), "--elements", &s.elements.to_string()]);
        cmd.args(["--tiny", &s.tiny.to_string(), "--latency", &s.latency.to_string(), "--reps", "1"]);
        cmd.args(["--manager", &s.manager.to_string()]);
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let out = wait(child, limit)?;
        ensure!(out.status.success(), "compare.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).context("compare.py output")?;
        let samples = json.as_object().context("a JSON object")?.iter();
        let samples =
            samples.filter_map(|(k, v)| Some((k.clone(), v.as_array()?.iter().filter_map(|x| x.as_f64()).collect())));
        Ok(samples.collect())
    }
}

/// Waits for `child`, killing it after `limit`.
fn wait(mut child: std::process::Child, limit: Duration) -> Result<std::process::Output> {
    let start = std::time::Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > limit {
            child.kill()?;
            bail!("compare.py still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.wait_with_output()?)
}
