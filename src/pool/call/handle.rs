//! `TaskHandle`: one submitted task's result, to wait for, poll, cancel or
//! `.await`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::pool::coordinator::cancel::Cancel;
use crate::pool::coordinator::lane::Lent;
use crate::pool::coordinator::slot::{Slot, SlotState};
use crate::pool::error::TaskError;
use crate::pool::transport::codec;
use crate::pool::transport::wire::Failure;

/// A task submitted with [`Pool::submit`](crate::pool::Pool::submit).
///
/// Wait for it ([`wait`](Self::wait), [`wait_timeout`](Self::wait_timeout)),
/// check it ([`try_wait`](Self::try_wait)), [`cancel`](Self::cancel) it
/// (which kills it if it is running), or `.await` it: the handle is a
/// `Future` that never blocks the runtime's threads.
///
/// **Dropping an unfinished handle cancels its task**, as dropping its
/// future does (a web framework drops the handler of a closed
/// connection): a queued task never runs, a running one has its helper
/// killed and replaced. [`detach`](Self::detach) lets it run on instead.
#[must_use = "dropping a task's handle cancels the task; call .detach() to let it run"]
pub struct TaskHandle<R> {
    slot: Arc<Slot>,
    cancel: Arc<Cancel>,
    /// Sent straight to an idle helper: this handle's wait reads the
    /// answer itself while the job is lent (see `coordinator::lane`).
    lent: Option<Lent>,
    detached: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> Drop for TaskHandle<R> {
    fn drop(&mut self) {
        if !self.detached {
            self.slot.cancel(&self.cancel); // a no-op once the result is in
        }
        self.depart();
    }
}

impl<R: DeserializeOwned + 'static> TaskHandle<R> {
    pub(crate) fn new(slot: Arc<Slot>, cancel: Arc<Cancel>, lent: Option<Lent>) -> Self {
        TaskHandle { slot, cancel, lent, detached: false, _result: PhantomData }
    }

    /// Lets the task run to its end with no one waiting: dropping the
    /// handle no longer cancels it, and its result is discarded.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Blocks until the task is done and returns its result.
    pub fn wait(self) -> Result<R, TaskError> {
        self.attend(None);
        // A statement, not the tail: the slot's lock must be released before
        // `self` is dropped (its Drop takes the lock again).
        let result = take(&mut self.slot.wait(None));
        result
    }

    /// Waits up to `limit`; hands the handle back if the task is still running.
    pub fn wait_timeout(self, limit: Duration) -> Result<Result<R, TaskError>, TaskHandle<R>> {
        let start = std::time::Instant::now();
        self.attend(Some(limit));
        let mut state = self.slot.wait(Some(limit.saturating_sub(start.elapsed())));
        match state.result.is_some() {
            true => Ok(take(&mut state)),
            false => {
                drop(state);
                Err(self)
            }
        }
    }

    /// The result if the task is done; otherwise the handle, back.
    pub fn try_wait(self) -> Result<Result<R, TaskError>, TaskHandle<R>> {
        self.wait_timeout(Duration::ZERO)
    }

    /// Sends `key` on `tx` once the task is done (now, if it is).
    pub(crate) fn notify(&self, key: usize, tx: Sender<usize>) {
        self.depart(); // the driver delivers, and notifies
        let mut state = self.slot.lock();
        match state.result.is_some() {
            true => drop(tx.send(key)),
            false => state.notify = Some((key, tx)),
        }
    }

    /// True once a result (or failure) is in.
    pub fn is_finished(&self) -> bool {
        self.slot.lock().result.is_some()
    }

    /// Cancels the task: a queued task never runs, a running one has its
    /// helper killed (and replaced). Returns false if it had already finished.
    /// Its result is then [`TaskError::Cancelled`].
    pub fn cancel(&self) -> bool {
        let cancelled = self.slot.cancel(&self.cancel);
        self.depart(); // the driver collects the helper's answer, or its death
        cancelled
    }
}

impl<R> TaskHandle<R> {
    /// Waits for a lent job's answer by reading it from its helper's ring,
    /// for a short window at most: the round trip without a driver's hop.
    fn attend(&self, limit: Option<Duration>) {
        if let Some(lent) = &self.lent {
            let slot = &self.slot;
            lent.attend(limit.unwrap_or(Duration::MAX), || slot.is_ready());
        }
    }

    /// No longer attends a lent job: its driver takes it over.
    fn depart(&self) {
        if let Some(lent) = &self.lent {
            lent.depart();
        }
    }
}

fn take<R: DeserializeOwned + 'static>(state: &mut SlotState) -> Result<R, TaskError> {
    state.taken = true;
    let batch = state.result.take().expect("result present").map_err(|f| f.error)?;
    let first = codec::items::<R>(&batch).next();
    first.unwrap_or_else(|| Err(Failure::Codec("the helper sent no result".into()))).map_err(TaskError::from)
}

impl<R: DeserializeOwned + 'static> Future for TaskHandle<R> {
    type Output = Result<R, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.depart(); // a task's poll must not spin: the driver delivers, and wakes
        let mut state = self.slot.lock();
        if state.result.is_some() {
            return Poll::Ready(take(&mut state));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Yields `(index, result)` for each handle as its task finishes, in
/// completion order: Python's `as_completed`, with the input's index.
///
/// ```no_run
/// # fn square(x: u64) -> u64 { x * x }
/// # let pool: shmkit::Pool = todo!();
/// let handles: Vec<_> = (0..10).map(|i| pool.submit(square, i)).collect();
/// for (i, result) in shmkit::pool::as_completed(handles) {
///     println!("task {i}: {:?}", result);
/// }
/// ```
pub fn as_completed<R: DeserializeOwned + 'static>(handles: impl IntoIterator<Item = TaskHandle<R>>) -> AsCompleted<R> {
    let (tx, rx) = channel();
    let handles: Vec<_> = handles.into_iter().map(Some).collect();
    for (i, h) in handles.iter().flatten().enumerate() {
        h.notify(i, tx.clone());
    }
    AsCompleted { left: handles.len(), handles, rx }
}

/// Iterator returned by [`as_completed`].
pub struct AsCompleted<R> {
    handles: Vec<Option<TaskHandle<R>>>,
    rx: Receiver<usize>,
    left: usize,
}

impl<R: DeserializeOwned + 'static> Iterator for AsCompleted<R> {
    type Item = (usize, Result<R, TaskError>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let i = self.rx.recv().ok()?;
        self.left -= 1;
        let handle = self.handles[i].take().expect("each index is sent once");
        Some((i, handle.wait()))
    }
}
