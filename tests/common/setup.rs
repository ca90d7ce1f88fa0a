//! What some tests need beyond `cargo test`'s own build: example
//! binaries, a build with other features in a target dir of its own, MPI,
//! and a python with numpy. Each is set up on first use (never skipped);
//! a file lock keeps concurrent test binaries from doing it twice.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `target/` of this test run (`CARGO_TARGET_TMPDIR` is `target/tmp`).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target/tmp has a parent").to_path_buf()
}

/// Holds an exclusive `flock` on `target/tmp/<what>.lock` while alive.
pub struct SetupLock(std::fs::File);

impl SetupLock {
    pub fn take(what: &str) -> SetupLock {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{what}.lock"));
        let file = std::fs::File::create(&path).expect("create lock file");
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        SetupLock(file)
    }
}

/// Path of example binary `name`, building it first. Cargo gives tests no
/// `CARGO_BIN_EXE_*` for examples, and `cargo test --test X` builds none,
/// so this asks cargo (a no-op when the example is up to date; a stale
/// binary from an earlier build would test old code).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/PROFILE");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", "shmkit", "--example", name]);
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    let status = cmd.status();
    assert!(status.is_ok_and(|s| s.success()), "could not build example {name}");
    profile_dir.join("examples").join(name)
}

/// Runs `cargo ARGS` for this workspace with `CARGO_TARGET_DIR` set to
/// `target/<subdir>` (a build with other features must not replace the
/// artefacts this run is testing), in a process group of its own that is
/// killed whole if it outlives `limit`. Returns its output; panics, with
/// its stderr, if it fails.
pub fn cargo_in(subdir: &str, args: &[&str], limit: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env("CARGO_TARGET_DIR", target_dir().join(subdir));
    cmd.env_remove(CHILD_VAR).process_group(0).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = super::dies_with_parent(&mut cmd).spawn().expect("run cargo");
    let pgid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for cargo"),
        Err(_) => {
            let group = rustix::process::Pid::from_raw(pgid as i32).expect("a pid");
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            panic!("`cargo {}` still running after {limit:?}: killed", args.join(" "));
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "`cargo {}` failed ({}):\n{stdout}\n{stderr}", args.join(" "), out.status);
    out
}

use super::CHILD_VAR;

/// True if `program --version` runs.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// libclang, which rsmpi's build (bindgen) loads.
fn has_libclang() -> bool {
    if std::env::var_os("LIBCLANG_PATH").is_some() {
        return true;
    }
    let dirs = std::fs::read_dir("/usr/lib").into_iter().flatten().flatten();
    let llvm = dirs.filter(|d| d.file_name().to_string_lossy().starts_with("llvm-"));
    llvm.flat_map(|d| std::fs::read_dir(d.path().join("lib")).into_iter().flatten().flatten())
        .any(|f| f.file_name().to_string_lossy().starts_with("libclang"))
}

/// Makes sure OpenMPI (`mpirun`, `mpicc`) and libclang are here: installs
/// them with apt-get when missing and this runs as root (as CI does);
/// otherwise fails with the command to run.
pub fn ensure_mpi() {
    let _lock = SetupLock::take("mpi-setup");
    let ready = || runs("mpirun") && runs("mpicc") && has_libclang();
    if ready() {
        return;
    }
    const PACKAGES: [&str; 3] = ["libopenmpi-dev", "openmpi-bin", "libclang-dev"];
    let root = rustix::process::geteuid().is_root();
    assert!(
        root && runs("apt-get"),
        "the MPI tests need OpenMPI and libclang: run `sudo apt-get install -y {}`",
        PACKAGES.join(" ")
    );
    eprintln!("MPI missing: installing {} with apt-get", PACKAGES.join(" "));
    let apt = |args: &[&str]| {
        let status = Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status();
        assert!(status.is_ok_and(|s| s.success()), "apt-get {} failed", args.join(" "));
    };
    apt(&["update", "-qq"]);
    apt(&[&["install", "-y", "-qq"][..], &PACKAGES].concat());
    assert!(ready(), "apt-get installed {PACKAGES:?}, yet mpirun, mpicc or libclang is still missing");
}

/// A python3 with numpy: the system's if it has numpy, else a venv under
/// `target/tmp/numpy-venv` with numpy from PyPI.
pub fn python_with_numpy() -> PathBuf {
    let has_numpy = |py: &Path| {
        Command::new(py).args(["-c", "import numpy"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if has_numpy(&system) {
        return system;
    }
    let _lock = SetupLock::take("numpy-venv");
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("numpy-venv");
    let py = venv.join("bin/python");
    if !has_numpy(&py) {
        eprintln!("numpy missing: installing it into {}", venv.display());
        venv_with(&venv, &["numpy"]);
    }
    py
}

/// Makes a venv at `venv` (if there is none) and pip-installs `packages`.
pub fn venv_with(venv: &Path, packages: &[&str]) {
    let start = Instant::now();
    if !venv.join("bin/python").exists() {
        let ok = Command::new("python3").arg("-m").arg("venv").arg(venv).status().expect("python3 is required");
        assert!(ok.success(), "python3 -m venv {} failed", venv.display());
    }
    let pip = Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .status()
        .expect("run pip");
    assert!(pip.success(), "pip install {packages:?} failed");
    eprintln!("set up {} in {:.0?}", venv.display(), start.elapsed());
}
