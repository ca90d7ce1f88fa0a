//! Test harness: unique names, child processes that re-run this test
//! binary, a watchdog, and leak checks on `/dev/shm`.
#![allow(dead_code)] // each test binary uses a different part of this

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod setup;
#[allow(unused_imports)] // not every test binary runs an example
pub use setup::example;

/// Environment variable that tells a re-run test it is the child.
const CHILD_VAR: &str = "SHMKIT_TEST_CHILD";

/// A segment name no other test (or test run) uses.
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("shmkit-test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// In a child started by [`run_child`], the argument it was given.
pub fn child_arg() -> Option<String> {
    std::env::var(CHILD_VAR).ok()
}

/// Re-runs this test binary on exactly `test`, as a child told `arg`.
pub fn spawn_child(test: &str, arg: &str, stdout: Stdio) -> Child {
    child_command(test, arg, None).stdout(stdout).spawn().expect("spawn child test process")
}

/// The command that re-runs this test binary on exactly `test` as a child
/// told `arg`, dying at fault point `fault` if given (see `shmkit`'s
/// `fault-injection` feature), and dying with this process.
pub fn child_command(test: &str, arg: &str, fault: Option<&str>) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]).env(CHILD_VAR, arg);
    if let Some(point) = fault {
        cmd.env("SHMKIT_FAULT_INJECT", point);
    }
    dies_with_parent(&mut cmd);
    cmd
}

/// Makes `cmd`'s process get SIGKILL when the test process ends, even by
/// abort (a watchdog): no test leaves a process behind.
pub fn dies_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is a single async-signal-safe
    // syscall, which is all a pre_exec closure may do.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            Ok(())
        })
    }
}

/// Runs a child (see [`spawn_child`]) to the end under a 60 s watchdog.
///
/// Returns its status, after checking that it really ran `test` (a
/// misspelt name would otherwise run nothing and exit 0).
pub fn run_child(test: &str, arg: &str) -> ExitStatus {
    let mut child = spawn_child(test, arg, Stdio::piped());
    let mut out = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let status = wait_with_watchdog(child, Duration::from_secs(60));
    let out = reader.join().expect("stdout reader");
    assert!(!status.success() || out.contains("1 passed"), "child ran no test named {test}:\n{out}");
    status
}

/// Waits for `child`; a watchdog kills it if it outlives `limit`, so no
/// test hangs and no process is left behind.
pub fn wait_with_watchdog(mut child: Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} still running after {limit:?}: killed", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// True if `/dev/shm/NAME` exists.
pub fn shm_exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// Removes `/dev/shm/NAME` when dropped, for segments a test makes by
/// hand or that an assertion failure could leave behind.
pub struct ShmFile(pub String);

impl ShmFile {
    /// Writes `bytes` as the raw contents of segment `name`.
    pub fn with_bytes(name: &str, bytes: &[u8]) -> ShmFile {
        std::fs::write(Path::new("/dev/shm").join(name), bytes).expect("write /dev/shm entry");
        ShmFile(name.to_owned())
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(Path::new("/dev/shm").join(&self.0));
    }
}

/// Aborts the whole test binary if the test it guards is still running
/// after `limit`: a hung test fails loudly instead of stalling CI.
/// Helpers die with it (they watch their parent).
pub struct Watchdog(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Watchdog {
    pub fn new(limit: Duration) -> Watchdog {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !flag.load(Ordering::SeqCst) {
                if start.elapsed() > limit {
                    eprintln!("watchdog: test still running after {limit:?}; aborting");
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// True while process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The long tier: `SHMKIT_LONG_TESTS=1` (set by `.ci/run`) runs the kill
/// loops, the fault harness and the million-key runs at full length;
/// plain `cargo test` runs each of them short.
pub fn long_tier() -> bool {
    std::env::var_os("SHMKIT_LONG_TESTS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `short` in plain `cargo test`, `long` in the long tier.
pub fn tier<T>(short: T, long: T) -> T {
    if long_tier() {
        long
    } else {
        short
    }
}

/// A generator seeded from `SHMKIT_TEST_SEED`, or else the clock; the
/// seed is printed, so that a failing run can be replayed.
pub fn seeded_rng(what: &str) -> Rng {
    let seed = std::env::var("SHMKIT_TEST_SEED").ok().and_then(|s| s.parse().ok());
    let clock =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let seed = seed.unwrap_or_else(clock);
    println!("{what}: seed {seed} (SHMKIT_TEST_SEED={seed} replays it)");
    Rng::new(seed)
}

/// Sends `sig` to process `pid` (`kill(2)`).
pub fn signal(pid: u32, sig: rustix::process::Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw);
    let pid = pid.ok_or_else(|| std::io::Error::other("not a pid"))?;
    Ok(rustix::process::kill_process(pid, sig)?)
}

/// The names in `/dev/shm` this test process made (by [`unique`], or a
/// unique name of its pid): what a test may judge, never the rest of
/// `/dev/shm`, which other programs use too.
pub fn ours() -> std::collections::BTreeSet<String> {
    let pid = std::process::id();
    let (mine, unique) = (format!("-{pid}-"), format!("shmkit-{pid}-"));
    dev_shm()
        .into_iter()
        .filter(|e| (e.starts_with("shmkit-test-") && e.contains(&mine)) || e.starts_with(&unique))
        .collect()
}

/// The names in `/dev/shm` now.
pub fn dev_shm() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/dev/shm").unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

/// A small xorshift generator, for random fault moments (seeded, so a
/// failing run can be repeated).
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A number in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    /// True once in `one_in` times, on average.
    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}
