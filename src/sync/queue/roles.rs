//! `Sender` and `Receiver`: a queue's two ends, each holding a slot whose
//! liveness the other side sees (see the module above).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};
use super::{Core, Mode, Stop, EVER_RECEIVER, EVER_SENDER, ROLES};
use crate::{Error, Record, Result};

/// How often a sender with room looks whether any receiver is left.
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// Sends records into an [`ShmQueue`](super::ShmQueue); made by
/// [`ShmQueue::sender`](super::ShmQueue::sender). Dropping it (or its
/// process dying) gives its place back; once every sender is gone,
/// receivers of the drained queue get `Disconnected`.
pub struct Sender<T: Record> {
    core: Arc<Core<T>>,
    slot: usize,
    /// When this sender last looked for receivers, and what it saw.
    looked: AtomicU64,
    receivers: AtomicBool,
    born: Instant,
}

/// Takes records from an [`ShmQueue`](super::ShmQueue); made by
/// [`ShmQueue::receiver`](super::ShmQueue::receiver). Dropping it (or its
/// process dying) gives its place back; once every receiver is gone,
/// sends fail with `Disconnected`.
pub struct Receiver<T: Record> {
    core: Arc<Core<T>>,
    slot: usize,
}

/// Takes a slot in `table` for a new sender or receiver, and marks that
/// side as having had a member.
fn join<T: Record>(core: &Core<T>, senders: bool) -> Result<usize> {
    core.seg.check_process()?;
    let (table, ever, what) = match senders {
        true => (&core.senders, EVER_SENDER, "senders"),
        false => (&core.receivers, EVER_RECEIVER, "receivers"),
    };
    let slot = table.take(&core.seg).ok_or_else(|| Error::TooManyHandles {
        name: core.seg.name().to_owned(),
        what,
        max: ROLES,
    })?;
    core.word(ever).store(1, Ordering::Release);
    Ok(slot)
}

impl<T: Record> Sender<T> {
    pub(super) fn new(core: Arc<Core<T>>) -> Result<Self> {
        let slot = join(&core, true)?;
        Ok(Sender { core, slot, looked: AtomicU64::new(0), receivers: AtomicBool::new(true), born: Instant::now() })
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

    fn send_with(&self, item: T, mode: Mode) -> Result<(), (Stop, T)> {
        self.core.send(&item, mode, |fresh| self.receivers_alive(fresh)).map_err(|s| (s, item))
    }

    /// Sends `item`, waiting for room as long as it takes.
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.send_with(item, Mode::Block(None)).map_err(|(stop, t)| match stop {
            Stop::Shutdown => SendError::Shutdown(t),
            Stop::Disconnected => SendError::Disconnected(t),
            Stop::Inherited => SendError::Inherited(t),
            _ => SendError::Broken(t),
        })
    }

    /// Sends `item` if there is room now.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.send_with(item, Mode::Try).map_err(|(stop, t)| match stop {
            Stop::Full => TrySendError::Full(t),
            Stop::Busy => TrySendError::Stalled(t),
            Stop::Shutdown => TrySendError::Shutdown(t),
            Stop::Disconnected => TrySendError::Disconnected(t),
            Stop::Inherited => TrySendError::Inherited(t),
            _ => TrySendError::Broken(t),
        })
    }

    /// Sends `item`, waiting at most `limit` for room (and for the lock).
    pub fn send_timeout(&self, item: T, limit: Duration) -> Result<(), SendTimeoutError<T>> {
        let mode = Mode::Block(crate::sync::deadline(limit));
        self.send_with(item, mode).map_err(|(stop, t)| match stop {
            Stop::Timeout => SendTimeoutError::Timeout(t),
            Stop::Shutdown => SendTimeoutError::Shutdown(t),
            Stop::Disconnected => SendTimeoutError::Disconnected(t),
            Stop::Inherited => SendTimeoutError::Inherited(t),
            _ => SendTimeoutError::Broken(t),
        })
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

impl<T: Record> Drop for Sender<T> {
    fn drop(&mut self) {
        self.core.senders.give_back(&self.core.seg, self.slot);
        self.core.wake_everyone(); // receivers of an empty queue look again
    }
}

impl<T: Record> Receiver<T> {
    pub(super) fn new(core: Arc<Core<T>>) -> Result<Self> {
        let slot = join(&core, false)?;
        Ok(Receiver { core, slot })
    }

    fn recv_with(&self, mode: Mode) -> Result<T, Stop> {
        let core = &self.core;
        core.recv(mode, || core.side_alive(&core.senders, EVER_SENDER))
    }

    /// Takes the oldest record, waiting as long as it takes; an error at
    /// the end of the stream (shut down, or every sender gone, and drained).
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_with(Mode::Block(None)).map_err(|stop| match stop {
            Stop::Shutdown => RecvError::Shutdown,
            Stop::Disconnected => RecvError::Disconnected,
            Stop::Inherited => RecvError::Inherited,
            _ => RecvError::Broken,
        })
    }

    /// Takes a record if one is there now.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.recv_with(Mode::Try).map_err(|stop| match stop {
            Stop::Empty => TryRecvError::Empty,
            Stop::Busy => TryRecvError::Stalled,
            Stop::Shutdown => TryRecvError::Shutdown,
            Stop::Disconnected => TryRecvError::Disconnected,
            Stop::Inherited => TryRecvError::Inherited,
            _ => TryRecvError::Broken,
        })
    }

    /// Takes a record, waiting at most `limit`.
    pub fn recv_timeout(&self, limit: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_with(Mode::Block(crate::sync::deadline(limit))).map_err(|stop| match stop {
            Stop::Timeout => RecvTimeoutError::Timeout,
            Stop::Shutdown => RecvTimeoutError::Shutdown,
            Stop::Disconnected => RecvTimeoutError::Disconnected,
            Stop::Inherited => RecvTimeoutError::Inherited,
            _ => RecvTimeoutError::Broken,
        })
    }

    /// The records as they come, until the end of the stream.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.recv().ok())
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

impl<T: Record> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.core.receivers.give_back(&self.core.seg, self.slot);
        self.core.wake_everyone(); // senders of a full queue look again
    }
}
