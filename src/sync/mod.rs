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
mod lock;
mod lock_error;
mod mutex;
mod queue;
pub(crate) mod raw;
mod rwlock;
pub(crate) mod spin;

pub use barrier::{BarrierWaitResult, ShmBarrier};
pub use counter::ShmCounter;
pub use event::{EventMode, ShmEvent};
pub use lock::{AcquireError, NotHeld, ShmLock};
pub use lock_error::{LockError, LockTimeoutError, OwnerDied, TryLockError};
pub use mutex::{MutexGuard, ShmMutex};
pub use queue::{
    DynQueue, DynReceiver, DynSender, Receiver, RecvError, RecvTimeoutError, SendError, SendTimeoutError, Sender,
    ShmQueue, TryRecvError, TrySendError,
};
pub use rwlock::{ReadGuard, ShmRwLock, WriteGuard};

use crate::kind::SegmentKind;
use crate::segment::{other_head, Segment};
use crate::{Error, Result};
use raw::{RawMutex, MUTEX_SIZE};

/// What a primitive holds: `(role, numpy dtype)` pairs (see `segment::types`).
type Types<'a> = &'a [(&'a str, String)];

/// Creates the segment for a primitive of `kind` holding `types`, with a
/// body of `len` bytes, running `init` before other processes can see it.
fn create(name: &str, kind: SegmentKind, types: Types<'_>, len: usize, init: impl FnOnce(&Segment)) -> Result<Segment> {
    Segment::create(name, kind, &other_head(types), len, |seg| {
        init(seg);
        Ok(())
    })
}

/// Creates a segment whose body starts with a robust mutex (64 bytes),
/// running `init` on it before other processes can see it. If the mutex
/// cannot be made, the segment is never published.
fn create_locked(
    name: &str,
    kind: SegmentKind,
    types: Types<'_>,
    len: usize,
    init: impl FnOnce(&Segment),
) -> Result<(Segment, RawMutex)> {
    let seg = Segment::create(name, kind, &other_head(types), len, |seg| {
        // SAFETY: `bytes` checked that the first 64 bytes lie in the body,
        // which is 64-aligned and not yet published, so no one else uses it.
        let made = unsafe { RawMutex::init(seg.bytes(0, MUTEX_SIZE)) };
        made.map_err(|e| Error::from_io("pthread_mutex_init", name, e))?;
        init(seg);
        Ok(())
    })?;
    Ok(attach_lock(seg))
}

/// The mutex at the start of a segment made by [`create_locked`].
fn attach_lock(seg: Segment) -> (Segment, RawMutex) {
    // SAFETY: only called on segments of a kind whose creator ran
    // create_locked (the kind is checked at open), so an initialised mutex
    // sits at the body's start, 64-aligned; callers keep `seg` beside the
    // lock, so the mapping outlives it.
    let lock = unsafe { RawMutex::attach(seg.bytes(0, MUTEX_SIZE)) };
    (seg, lock)
}

/// Opens a primitive's segment, checking its kind, the types it holds and
/// its body's length.
fn open(name: &str, kind: SegmentKind, types: Types<'_>, len_ok: impl FnOnce(usize) -> bool) -> Result<Segment> {
    let seg = Segment::open(name, kind)?;
    seg.check_types(types)?;
    if !len_ok(seg.data_len()) {
        let why = format!("{} bytes do not fit a {kind} of this element type", seg.data_len());
        return Err(Error::bad_header(name, why));
    }
    Ok(seg)
}

/// Makes a lock guard neither `Send` nor `Sync`: a robust lock belongs to
/// the thread that took it, is released by that thread, and is handed on
/// (owner died) when that thread exits. A guard shared with another thread
/// (`Sync`, through a leaked guard) could still be read there after its
/// thread exited and the next locker got the value to write.
type NotSend = std::marker::PhantomData<*const ()>;

/// When a wait of `limit` from now ends; `None` (wait as long as it takes)
/// when that instant is past what `Instant` can hold, as for `Duration::MAX`.
pub(crate) fn deadline(limit: std::time::Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(limit)
}

/// A wait ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct Timeout;
