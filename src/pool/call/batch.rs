//! The pool's operations, with per-call settings: `pool.batch()...`.

use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::pool::call::handle::TaskHandle;
use crate::pool::coordinator::cancel::Cancel;
use crate::pool::coordinator::job::{Delivery, Job, Reply};
use crate::pool::coordinator::slot::Slot;
use crate::pool::error::Failed;
use crate::pool::error::TaskError;
use crate::pool::helper::registry::{Call, Task};
use crate::pool::transport::codec;
use crate::pool::Pool;
use crate::sync::spin::{spin, WINDOW};

/// Jobs a call queues at once while it is still encoding the rest.
const QUEUE_EVERY: usize = 16;

/// What a call's jobs answer on, how many answers there are, and how to
/// cancel them.
pub(super) type Sent = (Receiver<Delivery>, usize, Arc<Cancel>);

/// How argument sets are grouped into messages.
#[derive(Clone, Copy)]
pub(super) enum Chunking {
    /// Per operation: 1 for maps, auto for arrays.
    Default,
    /// About `len / (4 × helpers)`, as Python's `Pool.map` does.
    Auto,
    Fixed(usize),
}

/// Settings for the operations that follow, made by [`Pool::batch`].
/// Each setter takes and returns `self`; each operation consumes it.
#[must_use = "a batch does nothing until an operation is called on it"]
pub struct Batch<'p> {
    pub(super) pool: &'p Pool,
    pub(super) chunking: Chunking,
    pub(super) timeout: Option<Option<Duration>>,
    pub(super) retries: Option<u32>,
    pub(super) progress: Option<Box<dyn FnMut(usize, usize) + 'p>>,
    /// Jobs of the calls that follow are never pipelined deep (`Job::shallow`).
    pub(super) shallow: bool,
}

/// Results as tasks finish: `(index, result)`, from [`Batch::map_unordered`].
///
/// Dropping it before the last result cancels the tasks left: queued
/// ones never run, running ones have their helpers killed and replaced.
pub struct Unordered<'p, R> {
    rx: Receiver<Delivery>,
    ready: std::vec::IntoIter<(usize, Result<R, TaskError>)>,
    total: usize,
    done: usize,
    progress: Option<Box<dyn FnMut(usize, usize) + 'p>>,
    cancel: Arc<Cancel>,
    _r: std::marker::PhantomData<fn() -> R>,
}

impl<R> Drop for Unordered<'_, R> {
    fn drop(&mut self) {
        if self.done < self.total {
            self.cancel.cancel();
        }
    }
}

/// If the caller unwinds (a progress callback that panics) before every
/// result is in: cancels the call's jobs and waits until each has
/// answered, so that nothing of the call still runs once the caller's
/// frame is gone (an array pass releases its claim only then).
pub(super) struct FinishOnUnwind<'a>(
    pub(super) &'a Pool,
    pub(super) &'a Arc<Cancel>,
    pub(super) &'a Receiver<Delivery>,
);

impl Drop for FinishOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.1.cancel();
            self.0.inner.drop_cancelled(self.1); // queued ones answer now, not behind other work
            while self.2.recv().is_ok() {} // ends when every job has answered or been dropped
        }
    }
}

impl<'p> Batch<'p> {
    pub(crate) fn new(pool: &'p Pool) -> Self {
        Batch { pool, chunking: Chunking::Default, timeout: None, retries: None, progress: None, shallow: false }
    }

    /// Argument sets (or array rows) per message. Larger chunks cut
    /// per-task overhead; a lost or timed-out chunk fails whole.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunking = Chunking::Fixed(n.max(1));
        self
    }

    /// Chunks of about `len / (4 × helpers)`, as Python's `Pool.map` cuts
    /// them (array operations cut guided chunks unless a size is set).
    pub fn auto_chunksize(mut self) -> Self {
        self.chunking = Chunking::Auto;
        self
    }

    /// Timeout per message (a chunk, when chunked), instead of the pool's.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(Some(limit));
        self
    }

    /// No timeout for these tasks, whatever the pool's default.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = Some(None);
        self
    }

    /// Reruns for tasks whose helper died, instead of the pool's (never
    /// for in-place passes: see [`PoolBuilder::retries`](crate::pool::PoolBuilder::retries)).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
    }

    /// Called with `(done, total)` in the calling thread as results arrive.
    pub fn progress(mut self, f: impl FnMut(usize, usize) + 'p) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Takes the progress callback out (for operations that call it themselves).
    pub(super) fn progress_hook(&mut self) -> Option<Box<dyn FnMut(usize, usize) + 'p>> {
        self.progress.take()
    }

    /// Runs `f` on every argument; results in argument order, each its own
    /// `Result`, so one failed task never hides the others. A function of
    /// two to four arguments takes them as a tuple (Python's `starmap`).
    pub fn map<M: Call, F: Task<M>>(
        self,
        f: F,
        args: impl IntoIterator<Item = F::Args>,
    ) -> Vec<Result<F::Output, TaskError>> {
        let _ = f;
        let (rx, total, cancel) = self.send::<F>(args, 1);
        plain(collect(self.pool, rx, total, cancel, self.progress))
    }

    /// Like [`map`](Self::map), but yields `(index, result)` as tasks finish.
    pub fn map_unordered<M: Call, F: Task<M>>(
        self,
        f: F,
        args: impl IntoIterator<Item = F::Args>,
    ) -> Unordered<'p, F::Output> {
        let _ = f;
        let (rx, total, cancel) = self.send::<F>(args, 1);
        Unordered {
            rx,
            ready: Vec::new().into_iter(),
            total,
            done: 0,
            progress: self.progress,
            cancel,
            _r: std::marker::PhantomData,
        }
    }

    /// Starts one task and returns its handle at once.
    pub fn submit<M: Call, F: Task<M>>(self, f: F, arg: F::Args) -> TaskHandle<F::Output> {
        let _ = f;
        let (slot, cancel) = (Arc::new(Slot::default()), Arc::new(Cancel::default()));
        let mut encoded = Vec::new();
        let arg = codec::put(&mut encoded, &arg).map_err(TaskError::from);
        let mut lent = None;
        match self.task_id::<F>().and_then(|task| arg.map(|()| task)) {
            Ok(task) => {
                let job = self.job(task, encoded, 1, Reply::Slot(slot.clone()), &cancel);
                // Straight to an idle helper if there is one, else queued.
                match self.pool.inner.try_lend(job) {
                    Ok(l) => lent = Some(l),
                    Err(job) => self.pool.inner.push(vec![job]),
                }
            }
            Err(error) => slot.complete(Err(Failed { error, started: false })),
        }
        TaskHandle::new(slot, cancel, lent)
    }

    pub(super) fn task_id<F: 'static>(&self) -> Result<u32, TaskError> {
        let id = self.pool.inner.registry.id_of::<F>();
        id.ok_or(TaskError::NotRegistered(std::any::type_name::<F>()))
    }

    pub(super) fn job(&self, task: u32, args: Vec<u8>, count: u32, reply: Reply, cancel: &Arc<Cancel>) -> Job {
        let timeout = self.timeout.unwrap_or(self.pool.inner.config.timeout);
        let retries = self.retries.unwrap_or(self.pool.inner.config.retries);
        let (bounced, shallow, cancel, reply) = (0, self.shallow, cancel.clone(), Some(reply));
        Job { task, args, count, timeout, retries, bounced, shallow, claim: None, cancel, reply }
    }

    /// Encodes arguments into jobs of `default` (or the set chunk size)
    /// each, one buffer per job, and queues them; an argument that fails to
    /// encode is answered at once (and ends its job early).
    pub(super) fn send<F: Task<impl Sized>>(&self, args: impl IntoIterator<Item = F::Args>, default: usize) -> Sent {
        self.encode_and_queue::<F>(args, default, true)
    }

    /// One job per argument, all encoded before any is queued: an
    /// argument whose `Serialize` panics leaves no job of the call running.
    pub(super) fn send_all<F: Task<impl Sized>>(&self, args: Vec<F::Args>) -> Sent {
        self.encode_and_queue::<F>(args, 1, false)
    }

    /// [`send`](Self::send), queueing as it goes if `early`.
    fn encode_and_queue<F: Task<impl Sized>>(
        &self,
        args: impl IntoIterator<Item = F::Args>,
        default: usize,
        early: bool,
    ) -> Sent {
        let (tx, rx) = channel();
        let cancel = Arc::new(Cancel::default());
        let args = args.into_iter();
        let total_hint = args.size_hint().0;
        let per = match self.chunking {
            Chunking::Default => default,
            Chunking::Auto => total_hint.div_ceil(4 * self.pool.helpers()).max(1),
            Chunking::Fixed(n) => n,
        }
        .min(u32::MAX as usize);
        let task = self.task_id::<F>();
        let mut jobs = Vec::new();
        let (mut buf, mut first, mut count, mut total) = (Vec::new(), 0, 0usize, 0);
        for (i, arg) in args.enumerate() {
            total += 1;
            let put = match &task {
                Ok(_) => codec::put(&mut buf, &arg).map_err(TaskError::from),
                Err(e) => Err(e.clone()),
            };
            match put {
                Ok(()) if count == 0 => (first, count) = (i, 1),
                Ok(()) => count += 1,
                Err(error) => {
                    self.flush_job(&task, &mut buf, first, &mut count, &tx, &cancel, &mut jobs);
                    let _ = tx.send((i, 1, Err(Failed { error, started: false })));
                }
            }
            if count == per {
                self.flush_job(&task, &mut buf, first, &mut count, &tx, &cancel, &mut jobs);
                // Queue as we go, so that helpers start while the rest is
                // encoded; in groups, as each push takes the queue's lock.
                if early && (jobs.len() >= QUEUE_EVERY || total == per) {
                    self.pool.inner.push(std::mem::take(&mut jobs));
                }
            }
        }
        self.flush_job(&task, &mut buf, first, &mut count, &tx, &cancel, &mut jobs);
        self.pool.inner.push(jobs);
        (rx, total, cancel)
    }

    /// Turns the arguments gathered so far into a job.
    #[allow(clippy::too_many_arguments)] // the state of `send`'s loop
    fn flush_job(
        &self,
        task: &Result<u32, TaskError>,
        buf: &mut Vec<u8>,
        first: usize,
        count: &mut usize,
        tx: &std::sync::mpsc::Sender<Delivery>,
        cancel: &Arc<Cancel>,
        jobs: &mut Vec<Job>,
    ) {
        if let (Ok(task), 1..) = (task, *count) {
            let reply = Reply::Channel { first, tx: tx.clone() };
            let args = std::mem::replace(buf, Vec::with_capacity(buf.len())); // the next is likely as long
            jobs.push(self.job(*task, args, *count as u32, reply, cancel));
        }
        *count = 0;
    }
}

/// The results of one delivery, decoded, with their argument indices. An
/// item that failed in its helper may have begun its task unless the
/// helper did not know the task: a panic or an error comes from the task
/// body, and a codec failure may come after it (a result that could not
/// be encoded, or was too large), so an in-place pass counts those rows
/// in doubt rather than unchanged.
fn decoded<R: DeserializeOwned + 'static>(
    (first, count, outcome): Delivery,
    mut each: impl FnMut(usize, Result<R, Failed>),
) {
    match outcome {
        Ok(batch) => {
            codec::items::<R>(&batch).enumerate().for_each(|(k, r)| each(first + k, r.map_err(failed_in_task)))
        }
        Err(e) => (0..count as usize).for_each(|k| each(first + k, Err(e.clone()))),
    }
}

/// An item's failure in its helper, with whether its task may have begun.
pub(super) fn failed_in_task(f: crate::pool::transport::wire::Failure) -> Failed {
    let started = !matches!(f, crate::pool::transport::wire::Failure::Unknown(_));
    Failed { error: TaskError::from(f), started }
}

/// Gathers `total` results into argument order, decoding each straight
/// into its place; returns once every job has answered.
pub(super) fn collect<R: DeserializeOwned + 'static>(
    pool: &Pool,
    rx: Receiver<Delivery>,
    total: usize,
    cancel: Arc<Cancel>,
    mut progress: Option<Box<dyn FnMut(usize, usize) + '_>>,
) -> Vec<Result<R, Failed>> {
    let _unwind = FinishOnUnwind(pool, &cancel, &rx);
    // Places never filled (their job was lost with the pool) stay `Terminated`.
    let mut out: Vec<Result<R, Failed>> = Vec::with_capacity(total);
    out.resize_with(total, || Err(Failed { error: TaskError::Terminated, started: true }));
    let mut done = 0;
    while done < total {
        let Some(delivery) = next(&rx) else { break }; // every job answers, even when dropped
        decoded(delivery, |i, r| {
            out[i] = r;
            done += 1;
            if let Some(p) = progress.as_mut() {
                p(done, total);
            }
        });
    }
    out
}

/// Results as the caller sees them: failures without the start marks.
fn plain<R>(results: Vec<Result<R, Failed>>) -> Vec<Result<R, TaskError>> {
    results.into_iter().map(|r| r.map_err(|f| f.error)).collect()
}

/// The next job's results: polled for a moment, then waited for.
pub(super) fn next(rx: &Receiver<Delivery>) -> Option<Delivery> {
    spin(WINDOW, || rx.try_recv().ok()).or_else(|| rx.recv().ok())
}

impl<R: DeserializeOwned + 'static> Iterator for Unordered<'_, R> {
    type Item = (usize, Result<R, TaskError>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done == self.total {
            return None;
        }
        let item = match self.ready.next() {
            Some(ready) => ready,
            None => {
                let delivery = next(&self.rx)?;
                let mut ready = Vec::new();
                decoded(delivery, |i, r: Result<R, Failed>| ready.push((i, r.map_err(|f| f.error))));
                self.ready = ready.into_iter();
                self.ready.next()?
            }
        };
        self.done += 1;
        if let Some(p) = self.progress.as_mut() {
            p(self.done, self.total);
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.total - self.done, Some(self.total - self.done))
    }
}

impl Pool {
    /// [`Batch::map`] with default settings.
    pub fn map<M: Call, F: Task<M>>(
        &self,
        f: F,
        args: impl IntoIterator<Item = F::Args>,
    ) -> Vec<Result<F::Output, TaskError>> {
        self.batch().map(f, args)
    }

    /// [`Batch::map`] with `n` argument sets per message.
    pub fn map_chunked<M: Call, F: Task<M>>(
        &self,
        f: F,
        args: impl IntoIterator<Item = F::Args>,
        n: usize,
    ) -> Vec<Result<F::Output, TaskError>> {
        self.batch().chunksize(n).map(f, args)
    }

    /// [`Batch::map_unordered`] with default settings.
    pub fn map_unordered<M: Call, F: Task<M>>(
        &self,
        f: F,
        args: impl IntoIterator<Item = F::Args>,
    ) -> Unordered<'_, F::Output> {
        self.batch().map_unordered(f, args)
    }

    /// [`Batch::submit`] with default settings.
    pub fn submit<M: Call, F: Task<M>>(&self, f: F, arg: F::Args) -> TaskHandle<F::Output> {
        self.batch().submit(f, arg)
    }
}
