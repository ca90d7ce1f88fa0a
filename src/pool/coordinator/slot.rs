//! `Slot`: the result cell behind a [`TaskHandle`](crate::pool::TaskHandle),
//! which the driver fills and the caller waits on (blocking, polling, or
//! as a future).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use crate::pool::coordinator::cancel::Cancel;
use crate::pool::error::TaskError;
use crate::pool::error::{Failed, Outcome};
use crate::sync::spin::{spin, WINDOW};

/// One task's result, and who waits for it.
#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    done: Condvar,
    /// Set with the result, for waiters that poll before they sleep.
    ready: AtomicBool,
    /// Waiters asleep on `done` (or about to be: counted under the lock).
    sleepers: AtomicU32,
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
    /// again. Runs on a driver thread: a waker that panics (user code of
    /// an async runtime) must not take the driver, and the pool's helper,
    /// down with it.
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
            let _ = catch_unwind(AssertUnwindSafe(|| w.wake()));
        }
        if let Some((i, tx)) = notify {
            let _ = tx.send(i);
        }
    }

    /// True once the result is in (without taking the lock).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
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
        self.finish(s, Err(Failed { error: TaskError::Cancelled, started: false }));
        cancel.cancel();
        true
    }
}
