//! A unit of work on its way to a helper, where its result goes, and how
//! it is cancelled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rustix::fd::OwnedFd;
use std::task::Waker;
use std::time::Duration;

use super::error::TaskError;
use super::region::Region;
use super::spin::{spin, WINDOW};
use super::status;
use super::wire::Batch;

/// A job's results (one per argument, failures among them), or why the
/// whole job has none (its helper died, it timed out, was cancelled...).
pub(crate) type Outcome = Result<Batch, TaskError>;

/// What a batch call receives per job: the index of its first argument,
/// how many arguments it had, and its outcome.
pub(crate) type Delivery = (usize, u32, Outcome);

/// One message's worth of work: a task and one or more argument sets.
pub(crate) struct Job {
    pub task: u32,
    /// `count` arguments, encoded one after another (see `codec`).
    pub args: Vec<u8>,
    pub count: u32,
    pub timeout: Option<Duration>,
    /// How many more times it may be rerun if its helper dies under it.
    pub retries: u32,
    /// How many helpers died with this job next in line but not started:
    /// not its fault, unless it keeps happening (see `driver::on_death`).
    pub bounced: u32,
    /// Shared by every job of one call: cancelling it cancels them all.
    pub cancel: Arc<Cancel>,
    /// `None` once delivered; a job dropped undelivered fails as `Terminated`.
    pub reply: Option<Reply>,
}

/// Where a job's results go.
pub(crate) enum Reply {
    /// One result, to a [`TaskHandle`](super::TaskHandle).
    Slot(Arc<Slot>),
    /// One result per argument, for arguments `first..`, to a batch call:
    /// one message per job, however many arguments it carries.
    Channel { first: usize, tx: Sender<Delivery> },
}

impl Job {
    /// Hands the outcome to whoever waits for it.
    pub fn deliver(mut self, outcome: Outcome) {
        send(self.reply.take().expect("a job is delivered once"), self.count, outcome);
    }

    /// Fails every argument set of the job with `error`.
    pub fn fail(self, error: TaskError) {
        self.deliver(Err(error));
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // Every waiter gets an answer, even if the pool goes away under it.
        if let Some(reply) = self.reply.take() {
            send(reply, self.count, Err(TaskError::Terminated));
        }
    }
}

/// Hands `outcome` (of `count` arguments) to whoever waits on `reply`.
fn send(reply: Reply, count: u32, outcome: Outcome) {
    match reply {
        Reply::Slot(slot) => slot.complete(outcome),
        Reply::Channel { first, tx } => {
            let _ = tx.send((first, count, outcome)); // the caller may have stopped listening
        }
    }
}

/// A live helper process, as a canceller sees it.
pub(crate) struct HelperCell {
    pub pid: u32,
    /// A pidfd (`pidfd_open(2)`) when the kernel has them: signals through
    /// it reach this process and never another that reused its pid, even
    /// after the helper was reaped.
    pub pidfd: Option<OwnedFd>,
    /// The pool's status words, and which is this helper's.
    pub region: Arc<Region>,
    pub index: usize,
    /// Held while deciding whether to kill, so that two deciders (a
    /// timeout and a cancel) never lift each other's hold; true once one
    /// of them killed the helper.
    killed: Mutex<bool>,
}

impl HelperCell {
    pub fn new(pid: u32, pidfd: Option<OwnedFd>, region: Arc<Region>, index: usize) -> HelperCell {
        HelperCell { pid, pidfd, region, index, killed: Mutex::new(false) }
    }

    /// The helper's status word.
    pub fn word(&self) -> &AtomicU64 {
        self.region.word(self.index).expect("drivers are numbered within the pool's segment")
    }

    /// Kills the helper if job `id` is (or is about to be) running on it;
    /// leaves it alone if `id` is done (its result is written: the driver
    /// will read it) or the helper has moved past it. True if the helper
    /// is killed (by this call or an earlier one).
    pub fn stop_job(&self, id: u64) -> bool {
        // A panic while holding this lock leaves a plain flag; go on.
        let mut killed = self.killed.lock().unwrap_or_else(|e| e.into_inner());
        if *killed {
            return true;
        }
        let (running, done) = status::hold(self.word());
        if running > id || (running == id && done) {
            status::release(self.word());
            return false;
        }
        self.kill(); // the hold stays: it starts nothing more
        *killed = true;
        true
    }

    /// SIGKILLs the helper, through its pidfd when there is one.
    pub fn kill(&self) {
        match &self.pidfd {
            Some(fd) => {
                let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
            }
            None => crate::os::kill(self.pid),
        }
    }
}

/// How one call's jobs are cancelled: a flag the drivers check before
/// sending or while awaiting a job, and the helpers running its jobs now.
#[derive(Default)]
pub(crate) struct Cancel {
    state: Mutex<CancelState>,
    cancelled: AtomicBool,
}

#[derive(Default)]
struct CancelState {
    running: Vec<(Arc<HelperCell>, u64)>,
}

impl Cancel {
    fn lock(&self) -> MutexGuard<'_, CancelState> {
        // A panic while holding this lock leaves plain data behind; go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Records that job `id` now runs on `helper`, so a cancel can stop it;
    /// false if already cancelled.
    pub fn start_on(&self, helper: &Arc<HelperCell>, id: u64) -> bool {
        let mut s = self.lock();
        if self.is_cancelled() {
            return false;
        }
        s.running.push((helper.clone(), id));
        true
    }

    /// Forgets job `id` on `helper` (finished, or its helper is gone).
    pub fn stop_running(&self, helper: &Arc<HelperCell>, id: u64) {
        self.lock().running.retain(|(h, i)| !(Arc::ptr_eq(h, helper) && *i == id));
    }

    /// Cancels: queued jobs will never run, running ones are stopped.
    pub fn cancel(&self) {
        let mut s = self.lock();
        self.cancelled.store(true, Ordering::Release);
        for (helper, id) in s.running.drain(..) {
            helper.stop_job(id);
        }
    }
}

/// The result cell behind a [`TaskHandle`](super::TaskHandle).
#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    done: Condvar,
    /// Set with the result, for waiters that poll before they sleep.
    ready: AtomicBool,
    /// Waiters asleep on `done` (or about to be: counted under the lock).
    sleepers: std::sync::atomic::AtomicU32,
}

#[derive(Default)]
pub(crate) struct SlotState {
    pub result: Option<Outcome>,
    pub taken: bool,
    pub waker: Option<Waker>,
    pub notify: Option<(usize, Sender<usize>)>,
}

impl Slot {
    pub fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding this lock leaves plain data behind; go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the result and wakes every kind of waiter; does nothing if
    /// a result is there already (a cancel stores `Cancelled` at once).
    pub fn complete(&self, outcome: Outcome) {
        let s = self.lock();
        if s.result.is_some() || s.taken {
            return;
        }
        self.finish(s, outcome);
    }

    /// Stores `outcome` and wakes the waiters, after releasing the lock: a
    /// waker may poll or drop the handle on this very thread, which locks
    /// again.
    fn finish(&self, mut s: MutexGuard<'_, SlotState>, outcome: Outcome) {
        s.result = Some(outcome);
        let (waker, notify) = (s.waker.take(), s.notify.take());
        self.ready.store(true, Ordering::Release);
        drop(s);
        // Only a waiter that went to sleep needs the (system-call) wake-up;
        // a sleeper counts itself under the lock, before it sleeps.
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.done.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
        if let Some((i, tx)) = notify {
            let _ = tx.send(i);
        }
    }

    /// Waits up to `limit` (forever if `None`) for the result.
    pub fn wait(&self, limit: Option<Duration>) -> MutexGuard<'_, SlotState> {
        let window = limit.map_or(WINDOW, |l| l.min(WINDOW));
        spin(window, || self.ready.load(Ordering::Acquire).then_some(()));
        let ready = |s: &mut SlotState| s.result.is_none() && !s.taken;
        let guard = self.lock();
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let guard = match limit {
            None => self.done.wait_while(guard, ready).unwrap_or_else(|e| e.into_inner()),
            Some(d) => self.done.wait_timeout_while(guard, d, ready).unwrap_or_else(|e| e.into_inner()).0,
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    /// Cancels through `cancel`: true unless the result was already there.
    /// The result is `Cancelled` from now on, whatever the job still does:
    /// a waiter returns at once, not when a helper gets to the job.
    pub fn cancel(&self, cancel: &Cancel) -> bool {
        let s = self.lock();
        if s.result.is_some() || s.taken {
            return false;
        }
        self.finish(s, Err(TaskError::Cancelled));
        cancel.cancel();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision a timeout or a cancel makes before killing: kill only
    /// if the job meant is (or is about to be) the one running.
    #[test]
    fn stop_job_kills_only_while_the_job_meant_runs() {
        let status = Arc::new(Region::create(1).unwrap());
        let spawn = || std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let cell = |child: &std::process::Child| HelperCell::new(child.id(), None, status.clone(), 0);
        let mut child = spawn();
        let helper = cell(&child);
        status::begin(helper.word(), 8); // job 7 finished, job 8 (in place, say) has started
        assert!(!helper.stop_job(7), "job 7 is done: its result is on its way");
        assert!(child.try_wait().unwrap().is_none(), "the helper running job 8 was spared");
        status::finish(helper.word(), 8);
        assert!(!helper.stop_job(8), "job 8's result is written: nothing to kill for");
        status::begin(helper.word(), 9);
        assert!(helper.stop_job(9));
        assert!(child.wait().unwrap().code().is_none(), "killed");
        // A second decider (a cancel after a timeout) finds it killed, and
        // must not lift the hold the first one set.
        assert!(helper.stop_job(8), "already killed");
        assert_eq!(helper.word().load(Ordering::Acquire) & 1, 1, "the hold stays");
        status::reset(helper.word());
        let mut child = spawn();
        let helper = cell(&child);
        assert!(helper.stop_job(3), "job 3 has not started: stop the helper before it does");
        child.wait().unwrap();
    }
}
