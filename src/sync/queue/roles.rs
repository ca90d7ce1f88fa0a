//! The queue's two ends, each holding a slot whose liveness the other side
//! sees (see the module above): [`DynSender`] and [`DynReceiver`] move
//! records as bytes; [`Sender`] and [`Receiver`] are their typed faces.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{Core, Mode, Stop, EVER_RECEIVER, EVER_SENDER, ROLES};
use super::error::{RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};
use crate::{Error, Record, Result};

/// How often a sender with room looks whether any receiver is left.
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// Sends records, as bytes, into a [`DynQueue`](super::DynQueue). Dropping
/// it (or its process dying) gives its place back; once every sender is
/// gone, receivers of the drained queue get `Disconnected`.
pub struct DynSender {
    core: Arc<Core>,
    slot: usize,
    /// When this sender last looked for receivers, and what it saw.
    looked: AtomicU64,
    receivers: AtomicBool,
    born: Instant,
}

/// Takes records, as bytes, from a [`DynQueue`](super::DynQueue).
/// Dropping it (or its process dying) gives its place back; once every
/// receiver is gone, sends fail with `Disconnected`.
pub struct DynReceiver {
    core: Arc<Core>,
    slot: usize,
}

/// Takes a slot in `table` for a new sender or receiver, and marks that
/// side as having had a member.
fn join(core: &Core, senders: bool) -> Result<usize> {
    core.seg.check_process()?;
    let (table, ever, what) = match senders {
        true => (&core.senders, EVER_SENDER, "senders"),
        false => (&core.receivers, EVER_RECEIVER, "receivers"),
    };
    let slot = table.take_patiently(&core.seg).ok_or_else(|| Error::TooManyHandles {
        name: core.seg.name().to_owned(),
        what,
        max: ROLES,
    })?;
    core.word(ever).store(1, Ordering::Release);
    Ok(slot)
}

/// Why a record of the wrong size cannot be sent or received.
fn wrong_size(core: &Core, len: usize) {
    assert_eq!(
        len, core.item.1,
        "a record of {len} bytes for a queue of {}-byte records ({})",
        core.item.1, core.item.0
    );
}

impl DynSender {
    pub(super) fn new(core: Arc<Core>) -> Result<Self> {
        let slot = join(&core, true)?;
        Ok(DynSender { core, slot, looked: AtomicU64::new(0), receivers: AtomicBool::new(true), born: Instant::now() })
    }

    /// True unless every receiver is gone: looked up at most every
    /// millisecond, or now if `fresh`.
    fn receivers_alive(&self, fresh: bool) -> bool {
        let now = self.born.elapsed().as_nanos() as u64;
        let last = self.looked.load(Ordering::Relaxed);
        if fresh || last == 0 || now.saturating_sub(last) >= LOOK_EVERY.as_nanos() as u64 {
            let alive = self.core.side_alive(&self.core.receivers, EVER_RECEIVER);
            self.receivers.store(alive, Ordering::Relaxed);
            self.looked.store(now.max(1), Ordering::Relaxed);
        }
        self.receivers.load(Ordering::Relaxed)
    }

    fn send_with(&self, item: &[u8], mode: Mode) -> Result<(), Stop> {
        wrong_size(&self.core, item.len());
        self.core.send(item, mode, |fresh| self.receivers_alive(fresh))
    }

    /// Sends one record, waiting for room as long as it takes.
    ///
    /// # Panics
    /// If `item` is not exactly one record's size ([`DynQueue::item_size`](super::DynQueue::item_size)).
    pub fn send(&self, item: &[u8]) -> Result<(), SendError<()>> {
        self.send_with(item, Mode::Block(None)).map_err(|stop| send_error(stop, ()))
    }

    /// Sends one record if there is room now.
    pub fn try_send(&self, item: &[u8]) -> Result<(), TrySendError<()>> {
        self.send_with(item, Mode::Try).map_err(|stop| try_send_error(stop, ()))
    }

    /// Sends one record, waiting at most `limit` for room (and for the lock).
    pub fn send_timeout(&self, item: &[u8], limit: Duration) -> Result<(), SendTimeoutError<()>> {
        let mode = Mode::Block(crate::sync::deadline(limit));
        self.send_with(item, mode).map_err(|stop| send_timeout_error(stop, ()))
    }

    /// Records in the queue now.
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// True if no record is in the queue now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for DynSender {
    fn drop(&mut self) {
        self.core.senders.give_back(&self.core.seg, self.slot);
        self.core.wake_everyone(); // receivers of an empty queue look again
    }
}

fn send_error<T>(stop: Stop, t: T) -> SendError<T> {
    match stop {
        Stop::Shutdown => SendError::Shutdown(t),
        Stop::Disconnected => SendError::Disconnected(t),
        Stop::Inherited => SendError::Inherited(t),
        _ => SendError::Broken(t),
    }
}

fn try_send_error<T>(stop: Stop, t: T) -> TrySendError<T> {
    match stop {
        Stop::Full => TrySendError::Full(t),
        Stop::Busy => TrySendError::Stalled(t),
        Stop::Shutdown => TrySendError::Shutdown(t),
        Stop::Disconnected => TrySendError::Disconnected(t),
        Stop::Inherited => TrySendError::Inherited(t),
        _ => TrySendError::Broken(t),
    }
}

fn send_timeout_error<T>(stop: Stop, t: T) -> SendTimeoutError<T> {
    match stop {
        Stop::Timeout => SendTimeoutError::Timeout(t),
        Stop::Shutdown => SendTimeoutError::Shutdown(t),
        Stop::Disconnected => SendTimeoutError::Disconnected(t),
        Stop::Inherited => SendTimeoutError::Inherited(t),
        _ => SendTimeoutError::Broken(t),
    }
}

impl DynReceiver {
    pub(super) fn new(core: Arc<Core>) -> Result<Self> {
        let slot = join(&core, false)?;
        Ok(DynReceiver { core, slot })
    }

    fn recv_with(&self, out: &mut [u8], mode: Mode) -> Result<(), Stop> {
        wrong_size(&self.core, out.len());
        let core = &self.core;
        core.recv(out, mode, || core.side_alive(&core.senders, EVER_SENDER))
    }

    /// Takes the oldest record into `out`, waiting as long as it takes; an
    /// error at the end of the stream (shut down, or every sender gone,
    /// and drained).
    ///
    /// # Panics
    /// If `out` is not exactly one record's size ([`DynQueue::item_size`](super::DynQueue::item_size)).
    pub fn recv_into(&self, out: &mut [u8]) -> Result<(), RecvError> {
        self.recv_with(out, Mode::Block(None)).map_err(|stop| match stop {
            Stop::Shutdown => RecvError::Shutdown,
            Stop::Disconnected => RecvError::Disconnected,
            Stop::Inherited => RecvError::Inherited,
            _ => RecvError::Broken,
        })
    }

    /// Takes a record into `out` if one is there now.
    pub fn try_recv_into(&self, out: &mut [u8]) -> Result<(), TryRecvError> {
        self.recv_with(out, Mode::Try).map_err(|stop| match stop {
            Stop::Empty => TryRecvError::Empty,
            Stop::Busy => TryRecvError::Stalled,
            Stop::Shutdown => TryRecvError::Shutdown,
            Stop::Disconnected => TryRecvError::Disconnected,
            Stop::Inherited => TryRecvError::Inherited,
            _ => TryRecvError::Broken,
        })
    }

    /// Takes a record into `out`, waiting at most `limit`.
    pub fn recv_timeout_into(&self, out: &mut [u8], limit: Duration) -> Result<(), RecvTimeoutError> {
        self.recv_with(out, Mode::Block(crate::sync::deadline(limit))).map_err(|stop| match stop {
            Stop::Timeout => RecvTimeoutError::Timeout,
            Stop::Shutdown => RecvTimeoutError::Shutdown,
            Stop::Disconnected => RecvTimeoutError::Disconnected,
            Stop::Inherited => RecvTimeoutError::Inherited,
            _ => RecvTimeoutError::Broken,
        })
    }

    /// [`recv_into`](Self::recv_into), into a new buffer.
    pub fn recv(&self) -> Result<Vec<u8>, RecvError> {
        let mut out = vec![0; self.core.item.1];
        self.recv_into(&mut out).map(|()| out)
    }

    /// Records in the queue now.
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// True if no record is in the queue now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for DynReceiver {
    fn drop(&mut self) {
        self.core.receivers.give_back(&self.core.seg, self.slot);
        self.core.wake_everyone(); // senders of a full queue look again
    }
}

/// Sends records into an [`ShmQueue`](super::ShmQueue); made by
/// [`ShmQueue::sender`](super::ShmQueue::sender). Dropping it (or its
/// process dying) gives its place back; once every sender is gone,
/// receivers of the drained queue get `Disconnected`.
pub struct Sender<T: Record> {
    inner: DynSender,
    _item: PhantomData<fn(T) -> T>,
}

/// Takes records from an [`ShmQueue`](super::ShmQueue); made by
/// [`ShmQueue::receiver`](super::ShmQueue::receiver). Dropping it (or its
/// process dying) gives its place back; once every receiver is gone,
/// sends fail with `Disconnected`.
pub struct Receiver<T: Record> {
    inner: DynReceiver,
    _item: PhantomData<fn(T) -> T>,
}

impl<T: Record> Sender<T> {
    pub(super) fn wrap(inner: DynSender) -> Self {
        Sender { inner, _item: PhantomData }
    }

    /// Sends `item`, waiting for room as long as it takes.
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.inner.send_with(bytemuck::bytes_of(&item), Mode::Block(None)).map_err(|stop| send_error(stop, item))
    }

    /// Sends `item` if there is room now.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.inner.send_with(bytemuck::bytes_of(&item), Mode::Try).map_err(|stop| try_send_error(stop, item))
    }

    /// Sends `item`, waiting at most `limit` for room (and for the lock).
    pub fn send_timeout(&self, item: T, limit: Duration) -> Result<(), SendTimeoutError<T>> {
        let mode = Mode::Block(crate::sync::deadline(limit));
        self.inner.send_with(bytemuck::bytes_of(&item), mode).map_err(|stop| send_timeout_error(stop, item))
    }

    /// Records in the queue now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True if no record is in the queue now.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl<T: Record> Receiver<T> {
    pub(super) fn wrap(inner: DynReceiver) -> Self {
        Receiver { inner, _item: PhantomData }
    }

    /// Takes the oldest record, waiting as long as it takes; an error at
    /// the end of the stream (shut down, or every sender gone, and drained).
    pub fn recv(&self) -> Result<T, RecvError> {
        let mut out = T::zeroed();
        self.inner.recv_into(bytemuck::bytes_of_mut(&mut out)).map(|()| out)
    }

    /// Takes a record if one is there now.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut out = T::zeroed();
        self.inner.try_recv_into(bytemuck::bytes_of_mut(&mut out)).map(|()| out)
    }

    /// Takes a record, waiting at most `limit`.
    pub fn recv_timeout(&self, limit: Duration) -> Result<T, RecvTimeoutError> {
        let mut out = T::zeroed();
        self.inner.recv_timeout_into(bytemuck::bytes_of_mut(&mut out), limit).map(|()| out)
    }

    /// The records as they come, until the end of the stream.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }

    /// Records in the queue now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True if no record is in the queue now.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}
