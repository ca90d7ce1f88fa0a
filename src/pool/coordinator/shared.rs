//! The job queue the drivers share, and when a driver sleeps or wakes.
//!
//! Calls push jobs (under one lock, in groups); each helper's driver pops
//! the next one, or, while more jobs wait than there are helpers, a few
//! more to pipeline. A driver with nothing to do polls `queued` for a short
//! window, then sleeps on a condition variable. A push wakes only as many
//! sleeping drivers as it brings jobs beyond those already polling (waking
//! every driver for one job made the losers spin on a small machine while
//! the winner's helper worked), and a woken driver that finds more jobs
//! than itself passes one wake-up on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::pool::config::Config;
use crate::pool::coordinator::cancel::Cancel;
use crate::pool::coordinator::job::Job;
use crate::pool::coordinator::lane::{Lane, Lent};
use crate::pool::error::TaskError;
use crate::pool::helper::registry::Registry;
use crate::pool::transport::region::Region;
use crate::sync::spin;

/// The pipeline while many jobs wait (see `pipeline_depth`).
const DEEP_PIPELINE: usize = 32;

/// What the driver threads share.
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    pub(crate) names: Vec<String>,
    pub(crate) config: Config,
    /// The queue; each idle driver sleeps on its lane's condition
    /// variable with this lock (so a wake-up can pick its driver).
    queue: Mutex<Queue>,
    /// Jobs in `queue`, readable without the lock, for spinning waiters.
    queued: AtomicUsize,
    /// Drivers polling `queued` right now: new jobs wake only the others.
    spinning: AtomicUsize,
    /// Each live helper's lane (its session, and its `HelperCell`).
    pub(crate) helpers: Mutex<Vec<Option<Arc<Lane>>>>,
    /// Each helper's status word and rings (shared with the helpers).
    pub(crate) region: Arc<Region>,
    /// Which claim tables of `region` a pass holds (bit per table).
    pub(crate) tables_taken: AtomicU32,
    /// The last pass number given to a claim table (see `claims`).
    pub(crate) passes: AtomicU32,
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Queue state stays consistent across a panic elsewhere; go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The shared state of a pool about to start its drivers.
    pub(crate) fn new(registry: Registry, config: Config, region: Region) -> Shared {
        let n = config.helpers;
        let queue = Queue { jobs: VecDeque::new(), closed: false, terminated: false, drivers: n, why_no_helper: None };
        Shared {
            names: registry.names(),
            registry,
            config,
            queue: Mutex::new(queue),
            queued: AtomicUsize::new(0),
            spinning: AtomicUsize::new(0),
            helpers: Mutex::new(vec![None; n]),
            region: Arc::new(region),
            tables_taken: AtomicU32::new(0),
            passes: AtomicU32::new(0),
        }
    }

    /// Queues jobs, or fails them at once if no helper will run them.
    pub(crate) fn push(&self, jobs: Vec<Job>) {
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
        self.wake_asleep(sleepers, None);
    }

    /// Wakes up to `n` drivers asleep (other than `but`'s), those whose
    /// helper is not serving a lent job first. The jobs are queued
    /// already: a driver that has not gone to sleep yet sees them.
    fn wake_asleep(&self, n: usize, but: Option<&Lane>) {
        if n == 0 {
            return;
        }
        let lanes = lock(&self.helpers);
        let asleep = |l: &&Arc<Lane>| {
            l.driver_asleep.load(Ordering::SeqCst) && !but.is_some_and(|b| std::ptr::eq(b, Arc::as_ptr(l)))
        };
        // A lane lent, or handed back and waiting for its driver, is busy.
        let busy = |l: &&Arc<Lane>| l.is_lent() || l.needs_driver();
        let free = lanes.iter().flatten().filter(asleep).filter(|l| !busy(l));
        let lent = lanes.iter().flatten().filter(asleep).filter(busy);
        free.chain(lent).take(n).for_each(|l| l.wake.notify_one());
    }

    /// Passes a wake-up on from the driver of `lane`, which returned for a
    /// queued job but serves a job lent meanwhile first: another idle
    /// helper must not sit idle while that job waits.
    pub(crate) fn pass_on(&self, lane: &Lane) {
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.wake_asleep(1, Some(lane));
        }
    }

    /// Wakes every driver (the pool closes or terminates).
    fn wake_all(&self) {
        lock(&self.helpers).iter().flatten().for_each(|l| l.wake.notify_all());
    }

    /// Fails the queued jobs of the call `cancel` stands for with
    /// `Cancelled` now, instead of when a driver gets to them: a caller
    /// that unwinds waits for its jobs' answers, which must not wait behind
    /// other calls' work.
    pub(crate) fn drop_cancelled(&self, cancel: &Arc<Cancel>) {
        let mut q = lock(&self.queue);
        if !q.jobs.iter().any(|j| Arc::ptr_eq(&j.cancel, cancel)) {
            return; // none queued (a pass looks again every 10 ms)
        }
        let (mine, rest): (VecDeque<Job>, VecDeque<Job>) =
            std::mem::take(&mut q.jobs).into_iter().partition(|j| Arc::ptr_eq(&j.cancel, cancel));
        q.jobs = rest;
        self.queued.store(q.jobs.len(), Ordering::Release);
        drop(q);
        mine.into_iter().for_each(|j| j.fail(TaskError::Cancelled));
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
        match deep {
            true => depth.max(DEEP_PIPELINE),
            false => depth,
        }
    }

    /// A job to send ahead to a busy helper with `inflight` jobs, only
    /// while more jobs wait than there are helpers (otherwise a short job
    /// could sit behind a long one while another helper idles), and a
    /// shallow job only within the configured depth; a claim job never
    /// (it goes to an idle helper).
    pub(crate) fn try_pop_ahead(&self, inflight: usize) -> Option<Job> {
        let mut q = lock(&self.queue);
        let deep = q.jobs.front().is_some_and(|j| j.claim.is_some() || (j.shallow && inflight >= self.config.pipeline));
        let job = (q.jobs.len() > self.config.helpers && !deep).then(|| q.jobs.pop_front()).flatten();
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

    /// Waits until there is work for the driver of `lane`: queued jobs, or
    /// a lent job handed back (or whose lease ran out).
    pub(crate) fn wait_for_work(&self, lane: &Lane) -> Work {
        // Work often comes right after the last: poll briefly before sleeping.
        self.spinning.fetch_add(1, Ordering::SeqCst);
        spin::spin(spin::WINDOW, || (self.queued.load(Ordering::SeqCst) > 0 || lane.needs_driver()).then_some(()));
        self.spinning.fetch_sub(1, Ordering::SeqCst);
        let mut q = lock(&self.queue);
        loop {
            // Asleep from here (under the queue's lock, which a kick takes
            // to notify): a lane handed back after this is seen below or
            // wakes us.
            lane.driver_asleep.store(true, Ordering::SeqCst);
            let work = match () {
                _ if q.terminated => Some(Work::Terminated),
                _ if !q.jobs.is_empty() => {
                    // A wake-up may have gone to a driver already woken for an
                    // earlier job: pass one on while more jobs than this wait.
                    if q.jobs.len() > 1 {
                        self.wake_asleep(1, Some(lane));
                    }
                    Some(Work::Ready)
                }
                _ if lane.needs_driver() => Some(Work::Ready),
                // A lent job is taken over before the driver stops.
                _ if q.closed && lane.is_lent() => Some(Work::Ready),
                _ if q.closed => Some(Work::Closed),
                _ => None,
            };
            if let Some(work) = work {
                lane.driver_awake();
                return work;
            }
            q = match lane.idle_sleep() {
                Some(t) => lane.wake.wait_timeout(q, t).unwrap_or_else(|e| e.into_inner()).0,
                None => lane.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// Wakes the driver of `lane`, handed a lent job back (see `lane`).
    /// Under the queue's lock, which the driver holds from its last look
    /// at the lane until it sleeps: the wake-up cannot fall in between.
    pub(crate) fn kick(&self, lane: &Lane) {
        let _q = lock(&self.queue);
        lane.wake.notify_one();
    }

    /// Sends `job` straight to an idle helper, when no queued job waits
    /// (it must not overtake them); the job back if none takes it.
    pub(crate) fn try_lend(&self, mut job: Job) -> Result<Lent, Job> {
        if self.queued.load(Ordering::SeqCst) > 0 {
            return Err(job);
        }
        // A copy: lending may wake a driver, which takes the queue's lock,
        // and the queue's lock is held while `helpers` is locked.
        let lanes: Vec<Arc<Lane>> = lock(&self.helpers).iter().flatten().cloned().collect();
        for lane in lanes {
            job = match lane.try_lend(job) {
                Ok(lent) => return Ok(lent),
                Err(job) => job,
            };
        }
        Err(job)
    }

    pub(crate) fn set_helper(&self, index: usize, lane: Option<Arc<Lane>>) {
        lock(&self.helpers)[index] = lane;
    }

    pub(crate) fn is_terminated(&self) -> bool {
        lock(&self.queue).terminated
    }

    pub(crate) fn is_stopping(&self) -> bool {
        let q = lock(&self.queue);
        q.terminated || q.closed
    }

    /// True once the pool is shut down and no job waits: a helper that
    /// died now needs no replacement.
    pub(crate) fn is_done(&self) -> bool {
        let q = lock(&self.queue);
        q.terminated || (q.closed && q.jobs.is_empty())
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

    /// No more jobs will come (the pool is dropped): drivers finish what
    /// is queued, then stop.
    pub(crate) fn close(&self) {
        lock(&self.queue).closed = true;
        self.wake_all();
    }

    pub(crate) fn terminate(&self) {
        let jobs: Vec<Job> = {
            let mut q = lock(&self.queue);
            q.terminated = true;
            self.queued.store(0, Ordering::Release);
            q.jobs.drain(..).collect()
        };
        self.wake_all();
        jobs.into_iter().for_each(|j| j.fail(TaskError::Terminated));
        for h in lock(&self.helpers).iter().flatten() {
            h.cell.kill();
        }
    }
}
