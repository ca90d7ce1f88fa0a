//! `Completions`: task handles added at any time, their results taken in
//! the order the tasks finish. [`as_completed`](super::handle::as_completed)
//! over a set that grows: what a binding needs to complete its own
//! futures (Python's `concurrent.futures.Future`) from one thread.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::handle::TaskHandle;
use crate::pool::error::TaskError;

/// Task handles, each under a key, whose results come out as the tasks
/// finish. Every method takes `&self`: one thread adds and cancels while
/// another waits in [`next_timeout`](Self::next_timeout).
///
/// Dropping it cancels the tasks still in it, as dropping their handles
/// does.
///
/// ```no_run
/// # fn square(x: u64) -> u64 { x * x }
/// # let pool: shmkit::Pool = todo!();
/// use std::time::Duration;
/// let done = shmkit::pool::Completions::new();
/// let a = done.add(pool.submit(square, 3));
/// let b = done.add(pool.submit(square, 4));
/// while let Some((key, result)) = done.next_timeout(Duration::from_secs(10)) {
///     println!("{} -> {:?}", if key == a { "a" } else { "b" }, result);
/// }
/// # let _ = b;
/// ```
pub struct Completions<R> {
    handles: Mutex<Pending<R>>,
    finished: Mutex<Receiver<usize>>,
}

struct Pending<R> {
    by_key: HashMap<u64, TaskHandle<R>>,
    next_key: u64,
    tx: Sender<usize>,
}

impl<R: DeserializeOwned + 'static> Default for Completions<R> {
    fn default() -> Self {
        Completions::new()
    }
}

impl<R: DeserializeOwned + 'static> Completions<R> {
    /// An empty set.
    pub fn new() -> Self {
        let (tx, rx) = channel();
        Completions {
            handles: Mutex::new(Pending { by_key: HashMap::new(), next_key: 0, tx }),
            finished: Mutex::new(rx),
        }
    }

    /// Adds `handle`; its key, which [`next_timeout`](Self::next_timeout)
    /// yields with its result. Keys count up from 0 and are never reused.
    pub fn add(&self, handle: TaskHandle<R>) -> u64 {
        let mut pending = self.pending();
        let key = pending.next_key;
        pending.next_key += 1;
        handle.notify(key as usize, pending.tx.clone());
        pending.by_key.insert(key, handle);
        key
    }

    /// Cancels task `key` (see [`TaskHandle::cancel`]): false if it is not
    /// in the set or has finished. Its result, [`TaskError::Cancelled`],
    /// still comes out of `next_timeout`.
    pub fn cancel(&self, key: u64) -> bool {
        self.pending().by_key.get(&key).is_some_and(TaskHandle::cancel)
    }

    /// Tasks whose results have not been taken yet.
    pub fn len(&self) -> usize {
        self.pending().by_key.len()
    }

    /// True if no result is left to take.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next task to finish and its result, waiting at most `limit`;
    /// `None` if none finished in time.
    pub fn next_timeout(&self, limit: Duration) -> Option<(u64, Result<R, TaskError>)> {
        let finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let key = match finished.recv_timeout(limit) {
                Ok(key) => key as u64,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            };
            // A key whose handle is gone was taken already (never twice: a
            // slot notifies once); go on to the next.
            if let Some(handle) = self.pending().by_key.remove(&key) {
                return Some((key, handle.wait()));
            }
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending<R>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }
}
