//! The process pool: helpers that attach arrays by name and run tasks,
//! with timeouts and crash recovery that never hang.

mod builder;
mod builtin;
mod cache;
mod codec;
mod driver;
mod error;
mod handle;
mod helper;
mod job;
mod ops;
mod panics;
mod process;
mod region;
mod registry;
mod ring;
mod role;
mod spawn;
mod spin;
mod status;
pub(crate) mod wire;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

pub use builder::PoolBuilder;
pub use error::{PoolError, TaskError};
pub use handle::{as_completed, AsCompleted, TaskHandle};
pub use helper::{init, is_helper, serve};
pub use ops::{Batch, Unordered};
pub use registry::{Registry, Task};

use builder::Config;
use job::{HelperCell, Job};

/// A pool of helper processes that run registered tasks.
///
/// Helpers are new processes (this executable again, or a helper binary),
/// never forks of this one, so a pool is safe in threaded and async
/// programs. A helper that dies or times out fails only the job it was
/// running (or reruns it, see [`PoolBuilder::retries`]) and is replaced;
/// every other job completes. Dropping the pool lets queued jobs finish,
/// then stops the helpers; [`terminate`](Pool::terminate) kills them now.
///
/// ```no_run
/// fn square(x: u64) -> u64 { x * x }
/// fn tasks(r: &mut shmkit::Registry) { r.add(square); }
///
/// shmkit::init(tasks); // first line of main: a helper serves here and exits
/// let pool = shmkit::Pool::new(tasks)?;
/// let squares: Vec<u64> = pool.map(square, 0..100).into_iter().collect::<Result<_, _>>()?;
/// # Ok::<(), anyhow::Error>(())
/// ```
pub struct Pool {
    inner: Arc<Inner>,
    drivers: Vec<JoinHandle<()>>,
}

/// What the driver threads share.
pub(crate) struct Inner {
    registry: Registry,
    names: Vec<String>,
    config: Config,
    queue: Mutex<Queue>,
    work: Condvar,
    /// Jobs in `queue`, readable without the lock, for spinning waiters.
    queued: AtomicUsize,
    /// Drivers polling `queued` right now: new jobs wake only the others.
    spinning: AtomicUsize,
    helpers: Mutex<Vec<Option<Arc<HelperCell>>>>,
    /// Each helper's status word and rings (shared with the helpers).
    region: Arc<region::Region>,
}

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
    terminated: bool,
    drivers: usize,
    why_no_helper: Option<String>,
}

/// What a driver waiting for work is told.
pub(crate) enum Work {
    Ready,
    Closed,
    Terminated,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Queue state stays consistent across a panic elsewhere; go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// A pool with default settings running `tasks`: one helper per core.
    pub fn new(tasks: fn(&mut Registry)) -> Result<Pool, PoolError> {
        Pool::builder().tasks(tasks).build()
    }

    /// A builder for a pool with other settings.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    fn start(registry: Registry, config: Config) -> Result<Pool, PoolError> {
        let n = config.helpers;
        let region = Arc::new(region::Region::create(n).map_err(|e| PoolError::Io(std::io::Error::other(e)))?);
        let queue = Queue { jobs: VecDeque::new(), closed: false, terminated: false, drivers: n, why_no_helper: None };
        let names = registry.names();
        let helpers = Mutex::new(vec![None; n]);
        let inner = Arc::new(Inner {
            registry,
            names,
            config,
            queue: Mutex::new(queue),
            work: Condvar::new(),
            queued: AtomicUsize::new(0),
            spinning: AtomicUsize::new(0),
            helpers,
            region,
        });
        let (tx, rx) = channel();
        let mut pool = Pool { inner: inner.clone(), drivers: Vec::with_capacity(n) };
        for i in 0..n {
            let (inner, tx) = (inner.clone(), tx.clone());
            let spawned =
                std::thread::Builder::new().name(format!("shmkit-helper-{i}")).spawn(move || driver::run(inner, i, tx));
            pool.drivers.push(spawned.map_err(PoolError::Io)?);
        }
        drop(tx); // so that a driver that died without reporting ends the wait
        for _ in 0..n {
            // On error, dropping `pool` stops the rest.
            let report = rx.recv().map_err(|_| PoolError::Io(std::io::Error::other("a pool driver thread died")))?;
            report?;
        }
        Ok(pool)
    }

    /// Number of helper processes.
    pub fn helpers(&self) -> usize {
        self.inner.config.helpers
    }

    /// Process ids of the helpers alive now.
    pub fn helper_pids(&self) -> Vec<u32> {
        lock(&self.inner.helpers).iter().flatten().map(|h| h.pid).collect()
    }

    /// Per-call settings (chunk size, timeout, retries, progress) for the
    /// operations that follow: `pool.batch().chunksize(100).map(f, args)`.
    pub fn batch(&self) -> Batch<'_> {
        Batch::new(self)
    }

    /// Kills every helper now; queued and running jobs fail with
    /// [`TaskError::Terminated`].
    pub fn terminate(mut self) {
        self.inner.terminate();
        self.join();
    }

    fn join(&mut self) {
        for d in self.drivers.drain(..) {
            let _ = d.join(); // a driver that panicked has nothing left to clean
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        lock(&self.inner.queue).closed = true;
        self.inner.work.notify_all();
        self.join();
    }
}

impl Inner {
    /// Queues jobs, or fails them at once if no helper will run them.
    fn push(&self, jobs: Vec<Job>) {
        let mut q = lock(&self.queue);
        if q.terminated || q.drivers == 0 {
            let why = q.why_no_helper.clone().unwrap_or_else(|| "the pool has no helpers left".into());
            let error = if q.terminated { TaskError::Terminated } else { TaskError::NoHelper(why) };
            drop(q);
            jobs.into_iter().for_each(|j| j.fail(error.clone()));
            return;
        }
        let n = jobs.len();
        q.jobs.extend(jobs);
        self.queued.store(q.jobs.len(), Ordering::SeqCst);
        drop(q);
        self.wake(n);
    }

    /// Wakes sleeping drivers for `n` new jobs, beyond those drivers
    /// already polling for work: waking every driver for one job made the
    /// losers spin on a small machine while the winner's helper worked.
    fn wake(&self, n: usize) {
        let sleepers = n.saturating_sub(self.spinning.load(Ordering::SeqCst));
        match sleepers >= self.config.helpers {
            true => self.work.notify_all(),
            false => (0..sleepers).for_each(|_| self.work.notify_one()),
        }
    }

    pub(crate) fn try_pop(&self) -> Option<Job> {
        let mut q = lock(&self.queue);
        let job = q.jobs.pop_front();
        self.queued.store(q.jobs.len(), Ordering::Release);
        job
    }

    /// Jobs to keep in flight per helper: a deep pipeline (sent in one
    /// write, answered in few reads) while many jobs wait, else the
    /// configured depth, so a short job never sits behind a long one.
    pub(crate) fn pipeline_depth(&self) -> usize {
        let depth = self.config.pipeline;
        let deep = depth > 1 && self.queued.load(Ordering::Acquire) > 8 * self.config.helpers;
        if deep {
            depth.max(32)
        } else {
            depth
        }
    }

    /// A job to send ahead to a busy helper, only while more jobs wait than
    /// there are helpers: otherwise a short job could sit behind a long one
    /// while another helper idles.
    pub(crate) fn try_pop_ahead(&self) -> Option<Job> {
        let mut q = lock(&self.queue);
        let job = (q.jobs.len() > self.config.helpers).then(|| q.jobs.pop_front()).flatten();
        self.queued.store(q.jobs.len(), Ordering::Release);
        job
    }

    /// Puts jobs back at the head of the queue, in their order.
    pub(crate) fn requeue(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let n = jobs.len();
        let mut q = lock(&self.queue);
        jobs.into_iter().rev().for_each(|j| q.jobs.push_front(j));
        self.queued.store(q.jobs.len(), Ordering::SeqCst);
        drop(q);
        self.wake(n);
    }

    pub(crate) fn wait_for_work(&self) -> Work {
        // Work often comes right after the last: poll briefly before sleeping.
        self.spinning.fetch_add(1, Ordering::SeqCst);
        spin::spin(spin::WINDOW, || (self.queued.load(Ordering::SeqCst) > 0).then_some(()));
        self.spinning.fetch_sub(1, Ordering::SeqCst);
        let mut q = lock(&self.queue);
        loop {
            match () {
                _ if q.terminated => return Work::Terminated,
                _ if !q.jobs.is_empty() => {
                    // A wake-up may have gone to a driver already woken for an
                    // earlier job: pass one on while more jobs than this wait.
                    if q.jobs.len() > 1 {
                        self.work.notify_one();
                    }
                    return Work::Ready;
                }
                _ if q.closed => return Work::Closed,
                _ => q = self.work.wait(q).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    pub(crate) fn set_helper(&self, index: usize, cell: Option<Arc<HelperCell>>) {
        lock(&self.helpers)[index] = cell;
    }

    pub(crate) fn is_terminated(&self) -> bool {
        lock(&self.queue).terminated
    }

    pub(crate) fn is_stopping(&self) -> bool {
        let q = lock(&self.queue);
        q.terminated || q.closed
    }

    /// A driver has stopped for good; with none left, queued jobs fail.
    pub(crate) fn driver_gone(&self, why: String) {
        let mut q = lock(&self.queue);
        q.drivers -= 1;
        q.why_no_helper.get_or_insert(why.clone());
        if q.drivers == 0 {
            let jobs: Vec<Job> = q.jobs.drain(..).collect();
            self.queued.store(0, Ordering::Release);
            drop(q);
            jobs.into_iter().for_each(|j| j.fail(TaskError::NoHelper(why.clone())));
        }
    }

    fn terminate(&self) {
        let jobs: Vec<Job> = {
            let mut q = lock(&self.queue);
            q.terminated = true;
            self.queued.store(0, Ordering::Release);
            q.jobs.drain(..).collect()
        };
        self.work.notify_all();
        jobs.into_iter().for_each(|j| j.fail(TaskError::Terminated));
        for h in lock(&self.helpers).iter().flatten() {
            h.kill();
        }
    }
}
