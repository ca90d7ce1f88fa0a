//! The benchmarks' shared part: where this workspace keeps its build
//! output (so that a bench finds the binaries cargo built, also with
//! `CARGO_TARGET_DIR` set), the machine a run measured, and the
//! generated sections of `benches/README.md`, and the venv the Python
//! columns run in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

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

/// Replaces the text between `<!-- BEGIN name -->` and `<!-- END name -->`
/// in `benches/README.md` with `body`: the measured tables there are
/// written by the benchmarks, never by hand.
pub fn update_readme(name: &str, body: &str) -> std::io::Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&path)?;
    let (begin, end) = (format!("<!-- BEGIN {name} -->\n"), format!("<!-- END {name} -->"));
    let missing = || std::io::Error::other(format!("{} has no {begin:?} ... {end:?} section", path.display()));
    let from = text.find(&begin).ok_or_else(missing)? + begin.len();
    let to = from + text[from..].find(&end).ok_or_else(missing)?;
    let updated = format!("{}{}\n{}", &text[..from], body.trim_end(), &text[to..]);
    std::fs::write(&path, updated)?;
    eprintln!("updated the {name} section of {}", path.display());
    Ok(())
}

/// The machine, as a table's caption names it: cores, CPU model, memory.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("?");
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = mem.split_whitespace().nth(1).and_then(|k| k.parse().ok()).unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cores} cores ({}), {:.0} GiB RAM", model.trim(), kib / (1 << 20) as f64)
}

/// Today's date (UTC), `YYYY-MM-DD`.
pub fn today() -> String {
    let out = std::process::Command::new("date").args(["-u", "+%Y-%m-%d"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
}

/// What the Python columns need: numpy for `compare.py` and
/// `stream/stream.py`; the shmkit
/// package (built from this tree), UltraDict 0.0.6 and the `atomics`
/// package its shared lock needs for `compare_python.py`.
/// loky and pebble for `compare_pool.py`.
const PACKAGES: [&str; 6] = ["numpy", "maturin>=1.9.4,<2", "UltraDict==0.0.6", "atomics", "loky", "pebble"];

/// The venv `target/bench-venv`, made and filled on first use, with this
/// tree's shmkit package (re)installed: an error says what failed.
fn python() -> Result<PathBuf> {
    if Command::new("python3").arg("--version").stdout(Stdio::null()).status().is_err() {
        bail!("python3 is not installed");
    }
    let venv = target_dir().join("bench-venv");
    let py = venv.join("bin/python");
    let has =
        |code: &str| Command::new(&py).args(["-c", code]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !has("import numpy, maturin, UltraDict, atomics, loky, pebble") {
        eprintln!("bench: installing {} into {}", PACKAGES.join(", "), venv.display());
        ensure!(Command::new("python3").arg("-m").arg("venv").arg(&venv).status()?.success(), "python3 -m venv failed");
        let pip = Command::new(&py).args(["-m", "pip", "install", "--quiet"]).args(PACKAGES).status()?;
        ensure!(pip.success(), "pip install {PACKAGES:?} failed");
    }
    eprintln!("bench: building the shmkit Python package into {}", venv.display());
    let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let pip = Command::new(&py)
        .args(["-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps", "--force-reinstall"])
        .arg(workspace().join("python"))
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target_dir().join("python"))
        .status()?;
    ensure!(pip.success(), "pip install ./python failed");
    Ok(py)
}

/// The venv's interpreter (see `python`), and its versions.
pub struct Python {
    exe: PathBuf,
    /// Python's and numpy's versions, as a table's caption names them.
    pub version: String,
}

impl Python {
    /// Sets up the venv; an error says why there is none.
    pub fn find() -> Result<Python> {
        let exe = python()?;
        let code = "import sys, numpy; print(f'Python {sys.version.split()[0]}, numpy {numpy.__version__}')";
        let out = Command::new(&exe).args(["-c", code]).output()?;
        ensure!(out.status.success(), "python3 with numpy does not run");
        Ok(Python { exe, version: String::from_utf8_lossy(&out.stdout).trim().to_owned() })
    }

    /// Runs `script` with `args`, killing it after `limit`; the JSON it prints.
    pub fn json(&self, script: &Path, args: &[String], limit: Duration) -> Result<serde_json::Value> {
        let child =
            Command::new(&self.exe).arg(script).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let out = wait(child, limit, script)?;
        let name = script.display();
        ensure!(out.status.success(), "{name} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).with_context(|| format!("the output of {name}"))
    }
}

/// `{"key": [numbers], ...}` as samples per key (keys without a list are left out).
pub fn samples(json: &serde_json::Value) -> Result<HashMap<String, Vec<f64>>> {
    let map = json.as_object().context("a JSON object of samples")?;
    let lists =
        map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_array()?.iter().filter_map(|x| x.as_f64()).collect())));
    Ok(lists.collect())
}

/// Waits for `child` (running `script`), killing it after `limit`.
fn wait(mut child: Child, limit: Duration, script: &Path) -> Result<Output> {
    let start = Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > limit {
            child.kill()?;
            bail!("{} still running after {limit:?}: killed", script.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.wait_with_output()?)
}
