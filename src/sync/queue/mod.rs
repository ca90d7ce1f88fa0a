//! `ShmQueue<T>`: a bounded multi-producer multi-consumer queue of records
//! in a named segment, with [`Sender`] and [`Receiver`] handles whose
//! liveness every process sees, and [`shutdown`](ShmQueue::shutdown) for
//! end-of-stream.
//!
//! A robust mutex guards the ring; senders and receivers that must wait
//! sleep on futex sequence words outside the lock (a slice at a time: a
//! waker killed between its change and its wake-up delays them by a slice,
//! never for good). Each critical section copies the record first and
//! moves the index last, with one store, so the ring is consistent at
//! every instant: a process killed inside one leaves either the whole
//! operation or none of it, and the next locker carries on (the lock
//! reports the death; the queue repairs nothing). What a killed process
//! can lose: a receiver killed inside `recv` after it moved the head and
//! before `recv` returned loses that one record; a sender killed inside
//! `send` either sent or did not.
//!
//! **Ends.** Senders and receivers each hold a slot (see
//! `segment::slots`), which their process's death frees. As with a pipe,
//! once every receiver is gone a send fails with `Disconnected` instead
//! of queueing records no one will take (within a millisecond of the last
//! receiver's death: a sender looks at most that often while there is
//! room), and once every sender is gone and the queue is drained a receive
//! does. Until the first receiver (or sender) arrives, nothing is
//! disconnected: either side may start first.

mod core;
mod dyn_queue;
mod error;
mod roles;

pub use dyn_queue::DynQueue;
pub use error::{RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};
pub use roles::{DynReceiver, DynSender, Receiver, Sender};

use std::marker::PhantomData;
use std::time::Duration;

use super::Timeout;
use crate::npy::record::dtype_of;
use crate::{Record, Result};

/// A bounded queue of `T` records shared by processes: the handle on its
/// segment (its lifetime, its length, its end), from which [`Sender`]s and
/// [`Receiver`]s are made.
///
/// ```
/// use shmkit::sync::{RecvError, ShmQueue};
/// # let name = format!("shmkit-doc-queue-{}", std::process::id());
/// let q = ShmQueue::<u64>::create(&name, 1024)?;
/// let tx = q.sender()?;
/// tx.send(7).unwrap();
/// q.shutdown(); // end of stream: receivers drain what is left
/// let rx = ShmQueue::<u64>::open(&name)?.receiver()?; // e.g. in another process
/// assert_eq!(rx.recv(), Ok(7));
/// assert_eq!(rx.recv(), Err(RecvError::Shutdown));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ShmQueue<T: Record> {
    inner: DynQueue,
    _item: PhantomData<fn(T) -> T>,
}

impl<T: Record> ShmQueue<T> {
    const ALIGNED: () =
        assert!(align_of::<T>() <= 64 && size_of::<T>() > 0, "queue records: 1 byte or more, aligned to at most 64");

    fn types() -> Result<[(&'static str, String); 1]> {
        Ok([("record", dtype_of::<T>()?)])
    }

    fn wrap(inner: DynQueue) -> Self {
        ShmQueue { inner, _item: PhantomData }
    }

    /// Creates queue segment `name` with room for `capacity` records.
    pub fn create(name: &str, capacity: u64) -> Result<Self> {
        let () = Self::ALIGNED;
        let [(_, tag)] = Self::types()?;
        DynQueue::create_typed(name, (tag, size_of::<T>()), capacity).map(Self::wrap)
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(capacity: u64) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, capacity))
    }

    /// Opens queue segment `name`, which must hold `T` records (by their
    /// numpy dtype: [`Error::WrongType`](crate::Error::WrongType) otherwise).
    pub fn open(name: &str) -> Result<Self> {
        let () = Self::ALIGNED;
        DynQueue::open_expecting(name, Some(&Self::types()?)).map(Self::wrap)
    }

    /// A sender: sends records, and while it (or another sender) lives,
    /// receivers of an empty queue wait instead of seeing the end.
    /// [`Error::TooManyHandles`](crate::Error::TooManyHandles) if 256 senders are open already.
    pub fn sender(&self) -> Result<Sender<T>> {
        self.inner.sender().map(Sender::wrap)
    }

    /// A receiver: takes records, and while it (or another receiver)
    /// lives, senders may send. [`Error::TooManyHandles`](crate::Error::TooManyHandles)
    /// if 256 receivers are open already.
    pub fn receiver(&self) -> Result<Receiver<T>> {
        self.inner.receiver().map(Receiver::wrap)
    }

    /// Ends the stream: sends fail from now on, and receivers get
    /// [`RecvError::Shutdown`] once they have drained what is left.
    ///
    /// Takes the queue's internal lock, so that no record lands after it
    /// returns: it waits while another process holds that lock (only for
    /// the few instructions of a send or receive, unless that process is
    /// stopped; a holder that dies releases it). To bound the wait, use
    /// [`shutdown_timeout`](Self::shutdown_timeout).
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Like [`shutdown`](Self::shutdown), waiting at most `limit` for the
    /// internal lock; on [`Timeout`] the queue is left open.
    pub fn shutdown_timeout(&self, limit: Duration) -> Result<(), Timeout> {
        self.inner.shutdown_timeout(limit)
    }

    /// True once shut down.
    pub fn is_shutdown(&self) -> bool {
        self.inner.is_shutdown()
    }

    /// Records in the queue now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True if no record is in the queue now.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Most records the queue holds.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
}

crate::segment::lifetime_api!(|s| crate::segment::HasSegment::segment(&s.inner); impl[T: Record] ShmQueue<T>);
