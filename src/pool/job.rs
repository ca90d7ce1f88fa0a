//! A unit of work on its way to a helper, and where its result goes.

use std::sync::atomic::{AtomicBool, Ordering};

use super::spin::{spin, WINDOW};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use super::error::TaskError;

/// An encoded result, or why there is none.
pub(crate) type Outcome = Result<Vec<u8>, TaskError>;

/// One message's worth of work: a task and one or more argument sets.
pub(crate) struct Job {
    pub task: u32,
    pub args: Vec<Vec<u8>>,
    pub timeout: Option<Duration>,
    /// How many more times it may be rerun if its helper dies under it.
    pub retries: u32,
    /// `None` once delivered; a job dropped undelivered fails as `Terminated`.
    pub reply: Option<Reply>,
}

/// Where a job's results go.
pub(crate) enum Reply {
    /// One result, to a [`TaskHandle`](super::TaskHandle).
    Slot(Arc<Slot>),
    /// One result per argument, for arguments `first..`, to a batch call:
    /// one message per job, however many arguments it carries.
    Channel { first: usize, tx: Sender<(usize, Vec<Outcome>)> },
}

impl Job {
    /// Hands each result to whoever waits for it.
    pub fn deliver(mut self, results: Vec<Outcome>) {
        send(self.reply.take().expect("a job is delivered once"), results);
    }

    /// Fails every argument set of the job with `error`.
    pub fn fail(self, error: TaskError) {
        let n = self.args.len();
        self.deliver(vec![Err(error); n]);
    }

    /// True if the caller cancelled it.
    pub fn is_cancelled(&self) -> bool {
        matches!(&self.reply, Some(Reply::Slot(s)) if s.lock().cancelled)
    }

    /// Records that the job now runs on `helper`, so `cancel` can kill it.
    /// Returns false if it was already cancelled.
    pub fn start_on(&self, helper: &Arc<HelperCell>) -> bool {
        let Some(Reply::Slot(slot)) = &self.reply else { return true };
        let mut state = slot.lock();
        state.running_on = Some(helper.clone());
        !state.cancelled
    }

    /// Forgets the helper, before that helper is reaped (its pid reused).
    pub fn stop_running(&self) {
        if let Some(Reply::Slot(slot)) = &self.reply {
            slot.lock().running_on = None;
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // Every waiter gets an answer, even if the pool goes away under it.
        if let Some(reply) = self.reply.take() {
            send(reply, vec![Err(TaskError::Terminated); self.args.len()]);
        }
    }
}

/// Hands `results` to whoever waits on `reply`.
fn send(reply: Reply, results: Vec<Outcome>) {
    match reply {
        Reply::Slot(slot) => slot.complete(results.into_iter().next().unwrap_or(Err(TaskError::Terminated))),
        Reply::Channel { first, tx } => {
            let _ = tx.send((first, results)); // the caller may have stopped listening
        }
    }
}

/// A live helper process as seen by `cancel`.
pub(crate) struct HelperCell {
    pub pid: u32,
    /// Set when a cancel killed this helper: whatever else it had in hand
    /// is rerun, not failed.
    pub killed_for_cancel: AtomicBool,
}

/// The result cell behind a [`TaskHandle`](super::TaskHandle).
#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    done: Condvar,
    /// Set with the result, for waiters that poll before they sleep.
    ready: AtomicBool,
}

#[derive(Default)]
pub(crate) struct SlotState {
    pub result: Option<Outcome>,
    pub taken: bool,
    pub cancelled: bool,
    pub running_on: Option<Arc<HelperCell>>,
    pub waker: Option<Waker>,
    pub notify: Option<(usize, Sender<usize>)>,
}

impl Slot {
    pub fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding this lock leaves plain data behind; go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the result (a cancelled task's result becomes `Cancelled`)
    /// and wakes every kind of waiter.
    pub fn complete(&self, outcome: Outcome) {
        let mut s = self.lock();
        if s.result.is_some() || s.taken {
            return;
        }
        s.result = Some(if s.cancelled { Err(TaskError::Cancelled) } else { outcome });
        s.running_on = None;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        if let Some((i, tx)) = s.notify.take() {
            let _ = tx.send(i);
        }
        self.ready.store(true, Ordering::Release);
        self.done.notify_all();
    }

    /// Waits up to `limit` (forever if `None`) for the result.
    pub fn wait(&self, limit: Option<Duration>) -> MutexGuard<'_, SlotState> {
        let window = limit.map_or(WINDOW, |l| l.min(WINDOW));
        spin(window, || self.ready.load(Ordering::Acquire).then_some(()));
        let ready = |s: &mut SlotState| s.result.is_none() && !s.taken;
        let guard = self.lock();
        match limit {
            None => self.done.wait_while(guard, ready).unwrap_or_else(|e| e.into_inner()),
            Some(d) => self.done.wait_timeout_while(guard, d, ready).unwrap_or_else(|e| e.into_inner()).0,
        }
    }

    /// Cancels: true unless the result was already there. A running task's
    /// helper is killed now.
    pub fn cancel(&self) -> bool {
        let mut s = self.lock();
        if s.result.is_some() || s.taken {
            return false;
        }
        s.cancelled = true;
        if let Some(helper) = s.running_on.take() {
            helper.killed_for_cancel.store(true, Ordering::SeqCst);
            crate::os::kill(helper.pid);
        }
        true
    }
}
