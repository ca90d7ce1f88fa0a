//! Cross-process primitives that live in named segments: a robust mutex
//! guarding `Pod` data, a reader-writer lock, an event, a barrier, an
//! atomic counter, and a bounded multi-producer multi-consumer queue.
//!
//! Each is a segment of its own, created by one process and opened by
//! name from any other, with the same lifetimes as arrays (the creator's
//! handle unlinks it). Every blocking call has `try_` and `_timeout`
//! forms. When a lock holder dies, the next locker is told so
//! ([`LockError::OwnerDied`]) instead of waiting forever.

mod barrier;
mod counter;
mod event;
mod mutex;
mod queue;
mod raw;
mod rwlock;

use std::fmt;

use ndarray::Ix1;

pub use barrier::{BarrierWaitResult, ShmBarrier};
pub use counter::ShmCounter;
pub use event::{EventMode, ShmEvent};
pub use mutex::{MutexGuard, ShmMutex};
pub use queue::{PopError, PushError, ShmQueue};
pub use rwlock::{ReadGuard, ShmRwLock, WriteGuard};

use crate::{Error, Result, SegmentKind, SharedArray};
use raw::{RawMutex, MUTEX_SIZE};

/// The bytes of one primitive's segment.
type Segment = SharedArray<u8, Ix1>;

/// Creates the segment for a primitive of `kind`, `len` bytes, running
/// `init` before other processes can see it.
fn create(name: &str, kind: SegmentKind, len: usize, init: impl FnOnce(&mut Segment)) -> Result<Segment> {
    SharedArray::create_kind(name, len, kind, init)
}

/// Creates a segment whose first 64 bytes hold a robust mutex, running
/// `init` on the rest before other processes can see it.
fn create_locked(
    name: &str,
    kind: SegmentKind,
    len: usize,
    init: impl FnOnce(&mut Segment),
) -> Result<(Segment, RawMutex)> {
    let mut made = Ok(());
    let seg = create(name, kind, len, |seg| {
        // SAFETY: bytes_at checked that the first 64 bytes lie in the fresh data,
        // which is 64-aligned and not yet published, so no one else uses it.
        made = unsafe { RawMutex::init(seg.bytes_at(0, MUTEX_SIZE)) }.map(drop);
        init(seg);
    })?;
    made.map_err(|e| Error::from_io("pthread_mutex_init", name, e))?;
    Ok(attach_lock(seg))
}

/// The mutex at the start of a segment made by [`create_locked`].
fn attach_lock(seg: Segment) -> (Segment, RawMutex) {
    // SAFETY: only called on segments of a kind whose creator ran
    // create_locked (the kind is checked at open), so an initialised mutex
    // sits at offset 0, 64-aligned; callers keep `seg` beside the lock, so
    // the mapping outlives it.
    let lock = unsafe { RawMutex::attach(seg.bytes_at(0, MUTEX_SIZE)) };
    (seg, lock)
}

/// Opens a primitive's segment, checking its kind and its length.
fn open(name: &str, kind: SegmentKind, len_ok: impl FnOnce(usize) -> bool) -> Result<Segment> {
    let seg = SharedArray::open_kind(name, kind)?;
    if !len_ok(seg.len()) {
        return Err(Error::bad_header(name, format!("{} bytes do not fit a {kind} of this element type", seg.len())));
    }
    Ok(seg)
}

/// A wait ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct Timeout;

/// Why a lock was not handed over normally. `G` is the guard.
pub enum LockError<G> {
    /// The previous holder died holding the lock. The lock is yours now,
    /// but the data may be half-updated: check (and repair) it through the
    /// guard, then [`acknowledge`](OwnerDied::acknowledge). Dropping it
    /// unacknowledged leaves a mutex unusable for everyone
    /// ([`LockError::Unrecoverable`]), as POSIX specifies.
    OwnerDied(OwnerDied<G>),
    /// `try_` form: someone else holds it.
    WouldBlock,
    /// `_timeout` form: not free in time.
    Timeout,
    /// An earlier owner-died lock was released unacknowledged, or another
    /// process corrupted the lock; it cannot be used again.
    Unrecoverable,
    /// This thread already holds the lock.
    Deadlock,
}

/// A lock whose previous holder died; see [`LockError::OwnerDied`].
pub struct OwnerDied<G> {
    guard: G,
    mark: Box<dyn FnOnce() + Send + Sync>,
}

impl<G> OwnerDied<G> {
    /// Declares the protected data consistent again and returns the guard;
    /// the lock stays usable for everyone.
    pub fn acknowledge(self) -> G {
        (self.mark)();
        self.guard
    }

    /// The guard, to inspect or repair the data before acknowledging.
    pub fn guard(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<G> LockError<G> {
    fn from_raw(failed: raw::Failed) -> Self {
        match failed {
            raw::Failed::WouldBlock => LockError::WouldBlock,
            raw::Failed::Timeout => LockError::Timeout,
            raw::Failed::Unrecoverable => LockError::Unrecoverable,
            raw::Failed::Deadlock => LockError::Deadlock,
        }
    }

    /// True for [`LockError::OwnerDied`].
    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockError::OwnerDied(_) => "OwnerDied(..)",
            LockError::WouldBlock => "WouldBlock",
            LockError::Timeout => "Timeout",
            LockError::Unrecoverable => "Unrecoverable",
            LockError::Deadlock => "Deadlock",
        })
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockError::OwnerDied(_) => "the previous holder died holding the lock; check the data, then acknowledge",
            LockError::WouldBlock => "the lock is held by someone else",
            LockError::Timeout => "the lock was not free in time",
            LockError::Unrecoverable => "the lock is unusable: an owner-died lock was released unacknowledged",
            LockError::Deadlock => "this thread already holds the lock",
        })
    }
}

impl<G> std::error::Error for LockError<G> {}
