//! Running `benches/compare.py` and `benches/compare_python.py` in a venv
//! the bench sets up itself (numpy, UltraDict, this tree's shmkit package).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::{Samples, Sizes};

/// The Python side: an interpreter with numpy, and its versions.
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

    /// One round of `benches/compare.py` (its own warm-up, then one run of
    /// each workload): per-workload samples.
    pub fn round(&self, s: &Sizes, limit: Duration) -> Result<HashMap<String, Samples>> {
        let mut args = vec!["--helpers".to_owned(), s.helpers.to_string(), "--elements".into(), s.elements.to_string()];
        args.extend(["--tiny".into(), s.tiny.to_string(), "--latency".into(), s.latency.to_string()]);
        args.extend(["--reps".into(), "1".into(), "--manager".into(), s.manager.to_string()]);
        self.run("compare.py", &args, limit)
    }

    /// One round of `benches/compare_python.py`: the shmkit package against
    /// `SharedMemory` + numpy, `multiprocessing.Manager` and UltraDict.
    pub fn package_round(&self, s: &Sizes, limit: Duration) -> Result<HashMap<String, Samples>> {
        let mut args = vec!["--helpers".to_owned(), s.helpers.to_string(), "--elements".into(), s.elements.to_string()];
        args.extend(["--keys".into(), s.python_keys.to_string(), "--reps".into(), "1".into()]);
        self.run("compare_python.py", &args, limit)
    }

    /// One round of `benches/compare_pool.py`: Python process pools side
    /// by side. Samples per `pool/metric`, and what a killed worker did
    /// to each pool.
    pub fn pool_round(
        &self,
        s: &Sizes,
        limit: Duration,
    ) -> Result<(HashMap<String, Samples>, HashMap<String, String>)> {
        let args = ["--helpers".to_owned(), s.helpers.to_string(), "--tasks".into(), s.pool_tasks.to_string()];
        let json = self.json("compare_pool.py", &args, limit)?;
        let (mut samples, mut kills) = (HashMap::new(), HashMap::new());
        for (pool, metrics) in json.as_object().context("a JSON object")? {
            for (metric, v) in metrics.as_object().context("an object per pool")? {
                match (v.as_str(), v.as_array()) {
                    (Some(what), _) => drop(kills.insert(pool.clone(), what.to_owned())),
                    (_, Some(values)) => {
                        samples.insert(format!("{pool}/{metric}"), values.iter().filter_map(|x| x.as_f64()).collect());
                    }
                    _ => {}
                }
            }
        }
        Ok((samples, kills))
    }

    /// Runs `script` (in `benches/`) with `args`; its JSON: samples per key.
    fn run(&self, script: &str, args: &[String], limit: Duration) -> Result<HashMap<String, Samples>> {
        let json = self.json(script, args, limit)?;
        let samples = json.as_object().context("a JSON object")?.iter();
        let samples =
            samples.filter_map(|(k, v)| Some((k.clone(), v.as_array()?.iter().filter_map(|x| x.as_f64()).collect())));
        Ok(samples.collect())
    }
}

impl Python {
    /// Runs `script` (in `benches/`) with `args`; the JSON it prints.
    fn json(&self, script: &str, args: &[String], limit: Duration) -> Result<serde_json::Value> {
        let child = Command::new(&self.exe)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let out = wait(child, limit)?;
        ensure!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).context("the script's output")
    }
}

/// Waits for `child`, killing it after `limit`.
fn wait(mut child: std::process::Child, limit: Duration) -> Result<std::process::Output> {
    let start = std::time::Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > limit {
            child.kill()?;
            bail!("a Python script still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.wait_with_output()?)
}
