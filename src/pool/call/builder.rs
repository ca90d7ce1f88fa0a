//! `PoolBuilder`: how many helpers, which program, and how they behave.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::pool::config::Config;
use crate::pool::error::{PoolError, TaskError};
use crate::pool::helper::registry::{Registry, Task};
use crate::pool::transport::codec;
use crate::pool::Pool;

// Send, so that a builder may be built on another thread (a binding builds
// with its interpreter lock released).
type Init = Box<dyn FnOnce(&Registry) -> Result<(u32, Vec<u8>), PoolError> + Send>;

/// Configures and starts a [`Pool`]; setters take and return `self`.
///
/// ```no_run
/// # fn tasks(r: &mut shmkit::Registry) {}
/// use std::time::Duration;
/// let pool = shmkit::Pool::builder()
///     .tasks(tasks)
///     .helpers(4)
///     .timeout(Duration::from_secs(30))
///     .retries(1)
///     .max_tasks_per_helper(1000)
///     .build()?;
/// # Ok::<(), shmkit::pool::PoolError>(())
/// ```
#[must_use = "a builder does nothing until .build()"]
pub struct PoolBuilder {
    tasks: fn(&mut Registry),
    config: Config,
    init: Option<Init>,
}

/// Cores available to this process, read once: `available_parallelism`
/// reads cgroup files each time, a few hundred microseconds of a pool's start.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The test this thread runs, when this is a test binary run by libtest:
/// cargo puts test binaries in `target/<profile>/deps/`, and libtest runs
/// each test on a thread named after it (with `--test-threads=1` too).
/// A program's `main` thread, and threads without a name, are not tests.
fn harness_test() -> Option<String> {
    let thread = std::thread::current();
    let name = thread.name().filter(|n| *n != "main")?;
    let exe = std::env::current_exe().ok()?;
    (exe.parent()?.file_name()? == "deps").then(|| name.to_owned())
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder::new()
    }
}

impl PoolBuilder {
    /// Defaults: one helper per core, this executable as the helper
    /// program, no timeout, no retries, helpers never recycled.
    pub fn new() -> PoolBuilder {
        let config = Config {
            helpers: cores(),
            program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
            args: Vec::new(),
            env: Vec::new(),
            max_tasks: None,
            timeout: None,
            retries: 0,
            init: None,
            pipeline: 2,
            start_timeout: Duration::from_secs(30),
            quiet: false,
            relay_output: true,
            test: None,
        };
        PoolBuilder { tasks: |_| {}, config, init: None }
    }

    /// The function that registers the tasks; the helpers must call
    /// [`init`](crate::init) (or [`serve`](crate::serve)) with the same one.
    pub fn tasks(mut self, tasks: fn(&mut Registry)) -> Self {
        self.tasks = tasks;
        self
    }

    /// Number of helper processes (default: the number of cores).
    pub fn helpers(mut self, n: usize) -> Self {
        self.config.helpers = n.max(1);
        self
    }

    /// Run helpers from a separate helper binary instead of this executable.
    /// Its `main` calls [`serve`](crate::serve) with the same tasks.
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.program = path.into();
        self
    }

    /// Adds an argument for the helper program.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.config.args.push(arg.into());
        self
    }

    /// Sets an environment variable for the helpers.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.config.env.push((key.into(), value.into()));
        self
    }

    /// For a pool built inside a `#[test]` function of a test binary: the
    /// helpers re-run this test binary on exactly `test` (its full path,
    /// e.g. `"pool::maps_in_order"` or just `"maps_in_order"` in an
    /// integration test), whose first line calls [`init`](crate::init).
    ///
    /// Rarely needed: `build` does this by itself when it runs on a test's
    /// thread of a test binary (libtest names the thread after the test,
    /// and cargo puts test binaries in `target/<profile>/deps/`). Only a
    /// pool built on another thread of a test needs it.
    pub fn in_test(mut self, test: &str) -> Self {
        self.config.test = Some(test.to_owned());
        let s = self.arg("--exact").arg(test).arg("--nocapture").arg("--test-threads=1");
        s.quiet(true)
    }

    /// Discards the helpers' standard output (default: shown).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.config.quiet = quiet;
        self
    }

    /// Lets helpers write straight to this process's standard output and
    /// error (`true`), as their own terminal, say, for colours or
    /// progress bars. By default (`false`) their output reaches this
    /// process's streams through pipes a whole line at a time, so lines
    /// of helpers printing at once never interleave mid-line, and the last
    /// lines of a helper that crashed still arrive.
    pub fn direct_output(mut self, direct: bool) -> Self {
        self.config.relay_output = !direct;
        self
    }

    /// Replaces a helper after it has run `n` jobs (Python's `maxtasksperchild`).
    pub fn max_tasks_per_helper(mut self, n: usize) -> Self {
        self.config.max_tasks = Some(n.max(1));
        self
    }

    /// Default timeout per job: past it, the helper is killed and replaced
    /// and the job fails with [`TaskError::TimedOut`].
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.config.timeout = Some(limit);
        self
    }

    /// How many times a job whose helper died is rerun before it fails
    /// with [`TaskError::WorkerDied`] (default 0). Timeouts are never rerun,
    /// nor chunks of in-place passes (a chunk half done would be applied
    /// twice: the pass reports it in doubt instead).
    pub fn retries(mut self, n: u32) -> Self {
        self.config.retries = n;
        self
    }

    /// Jobs sent ahead to each helper, so it never idles waiting for the
    /// next (default 2; 1 turns pipelining off; at most 64). A job
    /// cancelled while it waits in a helper's pipeline is skipped there.
    pub fn pipeline(mut self, depth: usize) -> Self {
        self.config.pipeline = depth.clamp(1, crate::pool::transport::status::SKIPS);
        self
    }

    /// How long a helper may take to start and initialise (default 30 s).
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.config.start_timeout = limit;
        self
    }

    /// Runs registered task `f` with `arg` once in every helper as it
    /// starts (and in every replacement). If it fails, `build` fails.
    pub fn initializer<M: crate::pool::helper::registry::Call, F: Task<M>>(mut self, f: F, arg: F::Args) -> Self {
        let _ = f;
        let mut encoded = Vec::new();
        let arg = codec::put(&mut encoded, &arg).map(|()| encoded);
        self.init = Some(Box::new(move |registry: &Registry| {
            let missing = TaskError::NotRegistered(std::any::type_name::<F>());
            let id = registry.id_of::<F>().ok_or(PoolError::NotRegistered(missing))?;
            Ok((id, arg.map_err(|f| PoolError::InitFailed(f.into()))?))
        }));
        self
    }

    /// Starts the helpers and waits until every one is ready.
    ///
    /// In a process started as a helper whose `main` did not call
    /// [`init`](crate::init) first, this does not return: the process
    /// tells its pool (whose `build` then fails with
    /// [`PoolError::NotInitialized`]) and exits, so a forgotten `init`
    /// never spawns more processes.
    pub fn build(mut self) -> Result<Pool, PoolError> {
        crate::role::guard(|| "built a pool".into());
        let this_program = std::env::current_exe().is_ok_and(|exe| exe == self.config.program);
        if self.config.test.is_none() && this_program {
            if let Some(test) = harness_test() {
                self = self.in_test(&test);
            }
        }
        let mut registry = Registry::new();
        (self.tasks)(&mut registry);
        if let Some(init) = self.init.take() {
            self.config.init = Some(init(&registry)?);
        }
        Pool::start(registry, self.config)
    }
}
