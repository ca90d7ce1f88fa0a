//! The Python package (`python/`): builds it with maturin (through pip)
//! into a venv under `target/`, then runs its pytest suite, whose
//! cross-language tests drive this binary as the Rust peer (the
//! `pytest_suite` test re-run as a child, told what to do), and checks
//! that the type stubs let `mypy --strict` check user code. Needs python3;
//! sets up the venv itself (never skips).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::setup::{target_dir, venv_with, SetupLock};
use common::Watchdog;

/// The venv with the package installed from this tree, once per run of
/// this binary (cargo rebuilds only what changed).
fn venv() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(install).clone()
}

fn install() -> PathBuf {
    let _lock = SetupLock::take("python-venv");
    let venv = target_dir().join("python-venv");
    let python = venv.join("bin/python");
    // fastapi and uvicorn for the web example (the seeds' endpoints).
    let tools = ["maturin>=1.9.4,<2", "numpy", "pytest>=7", "mypy", "fastapi", "uvicorn"];
    let has_tools = Command::new(&python)
        .args(["-c", "import maturin, numpy, pytest, mypy, fastapi, uvicorn"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_tools {
        venv_with(&venv, &tools);
    }
    let start = Instant::now();
    let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-build-isolation"])
        .args(["--no-deps", "--force-reinstall", "./python"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target_dir().join("python"))
        .output()
        .expect("run pip");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pip install ./python failed:\n{stderr}");
    eprintln!("built and installed the Python package in {:.0?}", start.elapsed());
    python
}

/// Runs `python ARGS` in the repository, with this binary as the Rust
/// peer; returns its stdout, panicking with all of its output on failure.
fn run(python: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(python);
    common::dies_with_parent(&mut cmd); // and so, through theirs, its children
    let out = cmd
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SHMKIT_RUST_PEER", std::env::current_exe().expect("current_exe"))
        .env("SHMKIT_RUST_PEER_TEST", "pytest_suite")
        .stdin(Stdio::null())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python {} failed:\n{stdout}\n{stderr}", args.join(" "));
    stdout
}

/// The pytest suite: arrays, collections, locks and queues across Python
/// and Rust processes, pickling through `multiprocessing` and
/// `concurrent.futures`, crash and Ctrl-C tests, every exception.
#[test]
fn pytest_suite() {
    if let Some(task) = common::child_arg() {
        return peer::run(&task);
    }
    let _w = Watchdog::new(Duration::from_secs(1500));
    let python = venv();
    let out = run(&python, &["-m", "pytest", "python/tests", "-q", "-p", "no:cacheprovider", "-rs"]);
    let summary = out.lines().last().unwrap_or_default();
    println!("pytest: {summary}");
    assert!(summary.contains(" passed"), "pytest ran nothing:\n{out}");
    assert!(!summary.contains("skipped"), "pytest skipped tests (none may skip):\n{out}");
}

/// The stubs let `mypy --strict` check user code (and the package itself).
#[test]
fn type_stubs_check_user_code_under_mypy_strict() {
    let _w = Watchdog::new(Duration::from_secs(1500));
    let python = venv();
    for target in [&["-p", "shmkit"][..], &["python/tests/typed_user.py"]] {
        let out = run(&python, &[&["-m", "mypy", "--strict", "--no-incremental"][..], target].concat());
        assert!(out.contains("Success: no issues found"), "{out}");
    }
}

/// The Rust side of the cross-language tests: `SHMKIT_TEST_CHILD` holds a
/// verb and its arguments; results go to stdout, one line each, which the
/// pytest helper (`python/tests/conftest.py`) reads.
mod peer {
    use std::io::{BufRead, Write};

    use shmkit::array::DynArray;
    use shmkit::collections::{DynVec, ShmMap};
    use shmkit::sync::DynQueue;
    use shmkit::{Error, SharedArray};

    /// One line to the pytest side, at once.
    fn say(line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Waits for a line on stdin (or its end): the pytest side's go-ahead.
    fn wait_for_go() {
        let _ = std::io::stdin().lock().read_line(&mut String::new());
    }

    pub fn run(task: &str) {
        let args: Vec<&str> = task.split_whitespace().collect();
        let n = |i: usize| args[i].parse::<usize>().expect("a number");
        match args[..] {
            // Creates an (8, 4) float64 array of 10*row + column; holds it
            // until told to go, then drops it (the owner removes the name).
            ["array-create", name] => {
                let data = ndarray::Array2::from_shape_fn((8, 4), |(i, j)| (10 * i + j) as f64);
                let _a = SharedArray::create_from(name, &data).expect("create");
                say("ready");
                wait_for_go();
            }
            // Opens an array by name, whatever its dtype, and says what it is.
            ["array-describe", name] => {
                let a = DynArray::open(name).expect("open");
                say(&format!("{} {:?} owner={}", a.dtype().descr(), a.shape(), a.is_owner()));
            }
            // Doubles a float64 array in place; says its new sum.
            ["array-double", name] => {
                let mut a = SharedArray::<f64>::open(name).expect("open");
                let mut v = a.view_mut().expect("claim the whole array");
                v.mapv_inplace(|x| 2.0 * x);
                say(&format!("sum {}", v.sum()));
            }
            // Claims rows for writing until told to go.
            ["array-claim", name, start, stop] => {
                let mut a = SharedArray::<f64>::open(name).expect("open");
                let (start, stop) = (start.parse().unwrap(), stop.parse().unwrap());
                let _rows = a.rows_mut(start..stop).expect("claim");
                say("claimed");
                wait_for_go();
            }
            // Tries to claim rows for writing once: "claimed" or "busy".
            ["array-try-claim", name, start, stop] => {
                let mut a = SharedArray::<f64>::open(name).expect("open");
                match a.rows_mut(start.parse().unwrap()..stop.parse().unwrap()) {
                    Ok(_) => say("claimed"),
                    Err(Error::Busy { .. }) => say("busy"),
                    Err(e) => say(&format!("error {e}")),
                };
            }
            // Inserts k -> k/2 for k in 0..N into an i64 -> f64 map.
            ["dict-insert", name, _] => {
                let map = ShmMap::<i64, f64>::open(name).expect("open");
                for k in 0..n(2) as i64 {
                    map.insert(k, k as f64 / 2.0).expect("insert");
                }
                say(&format!("len {}", map.len()));
            }
            // Creates an i64 -> f64 map holding 1 -> 1.5; holds it until told.
            ["dict-create", name] => {
                let map = ShmMap::<i64, f64>::create(name, 64).expect("create");
                map.insert(1, 1.5).expect("insert");
                say("ready");
                wait_for_go();
            }
            // Appends a zeroed element: run with the fault point
            // `vec-push-claimed`, it dies holding its slot (a hole).
            ["list-append", name] => {
                let list = DynVec::open(name).expect("open");
                list.push(&vec![0; list.item_size()]).expect("push");
                say("pushed");
            }
            // Sends N zeroed records: run with the pause point
            // `queue-send-locked`, each send stays 100 ms in the lock.
            ["queue-send", name, _] => {
                let queue = DynQueue::open(name).expect("open");
                let tx = queue.sender().expect("sender");
                say("sending");
                (0..n(2)).for_each(|_| tx.send(&vec![0; queue.item_size()]).expect("send"));
                say("sent");
            }
            // Publishes N (4, 5) u16 samples, each filled with its number,
            // on a Block stream (its subscribers lose nothing), then ends it.
            ["stream-publish", name, _] => {
                use shmkit::stream::{Policy, Publisher};
                let lag = std::time::Duration::from_secs(30);
                let p = Publisher::<u16, ndarray::Ix2>::create(name, (4, 5), 8, Policy::Block { lag }).expect("create");
                say("ready");
                wait_for_go();
                for i in 1..=n(2) {
                    let mut loan = p.loan().expect("loan");
                    loan.fill(i as u16);
                    p.publish(loan).expect("publish");
                }
                say("published");
            }
            // Reads a stream in order to its end; says each sample's number
            // and whether every element equals it.
            ["stream-read", name] => {
                use shmkit::stream::Subscriber;
                let s = Subscriber::<u16, ndarray::Ix2>::open_timeout(name, std::time::Duration::from_secs(30))
                    .expect("open");
                say("ready");
                while let Ok(sample) = s.next() {
                    let whole = sample.iter().all(|&x| u64::from(x) == sample.seq() % 65536);
                    say(&format!("{} {whole}", sample.seq()));
                }
                say("end");
            }
            _ => panic!("unknown peer task {task:?}"),
        }
    }
}
