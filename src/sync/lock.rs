//! `ShmLock`: a robust lock with no value, taken and released by calls
//! rather than by a guard's life, as Python's `threading.Lock` is. The
//! same segment as a [`ShmMutex<u8>`](super::ShmMutex), so either opens
//! the other's.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::raw::{Acquired, Failed, RawMutex, Wait};
use crate::kind::SegmentKind;
use crate::segment::Segment;
use crate::Result;

/// Where [`ShmMutex`](super::ShmMutex) keeps its poisoned word and value.
const POISONED: usize = 48;
const DATA: usize = 64;
const LEN: usize = DATA + 1;

/// Why [`ShmLock::acquire`] did not hand the lock over normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    /// A holder died holding the lock, and no one has acknowledged it
    /// since. **The lock is held by this thread now**: check (and repair)
    /// what it protects, then [`acknowledge`](ShmLock::acknowledge), then
    /// [`release`](ShmLock::release); released unacknowledged, the next
    /// taker is told too.
    #[error("a holder of the lock died holding it; this thread holds it now: repair, acknowledge, release")]
    OwnerDied,
    /// Not free in time (or, with no wait, not free now).
    #[error("the lock was not free in time")]
    Timeout,
    /// This thread holds it already: it would wait for itself.
    #[error("this thread already holds the lock: it would wait for itself")]
    Deadlock,
    /// Another process wrote over the lock's memory.
    #[error("the lock is unusable: another process wrote over it; make a new one")]
    Unrecoverable,
    /// This handle was inherited across `fork`: open the lock by name here.
    #[error("this lock was inherited across fork: open it again by name in this process")]
    Inherited,
}

/// [`ShmLock::release`] or [`ShmLock::acknowledge`] by a thread that does
/// not hold the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this thread does not hold the lock (a lock is released by the thread that took it)")]
pub struct NotHeld;

/// A robust lock in a named segment, with no value: [`acquire`](Self::acquire)
/// and [`release`](Self::release) are separate calls, for code (bindings
/// to Python, say) that cannot hold a guard across them. The thread that
/// acquires is the one that releases. A holder's death is reported to the
/// next taker ([`AcquireError::OwnerDied`]) and to every one after, until
/// one acknowledges it.
///
/// ```
/// use shmkit::sync::{AcquireError, ShmLock};
/// use std::time::Duration;
/// let lock = ShmLock::create_unique()?;
/// lock.acquire(None).unwrap();
/// let name = lock.name().to_owned(); // another thread (or process), by name:
/// let other = std::thread::spawn(move || ShmLock::open(&name).unwrap().acquire(Some(Duration::ZERO)));
/// assert_eq!(other.join().unwrap(), Err(AcquireError::Timeout));
/// lock.release().unwrap();
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ShmLock {
    seg: Segment,
    raw: RawMutex,
    /// Holds taken through this handle (0 or 1: the lock is not
    /// recursive). A release through a handle that took nothing is
    /// `NotHeld`, even on the holding thread: it would undo another
    /// handle's hold and its pin of the mapping.
    holds: AtomicU32,
}

impl ShmLock {
    fn types() -> [(&'static str, String); 1] {
        [("value", "|u1".to_owned())]
    }

    /// Creates lock segment `name`, free.
    pub fn create(name: &str) -> Result<Self> {
        let (seg, raw) = super::create_locked(name, SegmentKind::Mutex, &Self::types(), LEN, |_| {})?;
        Ok(ShmLock { seg, raw, holds: AtomicU32::new(0) })
    }

    /// Like [`create`](Self::create), under a fresh unique name.
    pub fn create_unique() -> Result<Self> {
        crate::name::retry_unique(Self::create)
    }

    /// Opens lock segment `name` (a `ShmLock`'s, or a `ShmMutex<u8>`'s).
    pub fn open(name: &str) -> Result<Self> {
        let seg = super::open(name, SegmentKind::Mutex, &Self::types(), |len| len == LEN)?;
        let (seg, raw) = super::attach_lock(seg);
        Ok(ShmLock { seg, raw, holds: AtomicU32::new(0) })
    }

    /// Takes the lock, waiting at most `limit` (`None`: as long as it
    /// takes; `Some(ZERO)`: not at all).
    pub fn acquire(&self, limit: Option<Duration>) -> Result<(), AcquireError> {
        self.seg.check_process().map_err(|_| AcquireError::Inherited)?;
        let wait = match limit {
            None => Wait::Forever,
            Some(Duration::ZERO) => Wait::No,
            Some(d) => Wait::within(d),
        };
        let got = self.raw.lock_with(wait).map_err(|f| match f {
            Failed::Timeout | Failed::WouldBlock => AcquireError::Timeout,
            Failed::Deadlock => AcquireError::Deadlock,
            Failed::Unrecoverable => AcquireError::Unrecoverable,
        })?;
        // Held, the mutex sits on this thread's robust list, which glibc and
        // the kernel write through: the mapping must outlive the hold, even
        // if this handle is dropped first (it is then kept mapped).
        self.seg.pin();
        self.holds.fetch_add(1, Ordering::AcqRel);
        let poisoned = self.seg.atomic_u32(POISONED);
        if got == Acquired::OwnerDied {
            // Remembered in the segment, and the lock made usable at once.
            poisoned.store(1, Ordering::Release);
            self.raw.mark_consistent();
        }
        match poisoned.load(Ordering::Acquire) {
            0 => Ok(()),
            _ => Err(AcquireError::OwnerDied),
        }
    }

    /// Releases the lock, held by this thread through this handle.
    pub fn release(&self) -> Result<(), NotHeld> {
        if self.holds.load(Ordering::Acquire) == 0 {
            return Err(NotHeld);
        }
        // Only the holding thread unlocks: another one is refused here,
        // and the count stays.
        self.raw.try_unlock().map_err(|_| NotHeld)?;
        self.holds.fetch_sub(1, Ordering::AcqRel);
        self.seg.unpin();
        Ok(())
    }

    /// Declares a dead holder's damage repaired (the caller holds the
    /// lock, after [`AcquireError::OwnerDied`]): later takers are no
    /// longer told.
    pub fn acknowledge(&self) -> Result<(), NotHeld> {
        match self.raw.held_here() && self.holds.load(Ordering::Acquire) > 0 {
            true => {
                self.seg.atomic_u32(POISONED).store(0, Ordering::Release);
                Ok(())
            }
            false => Err(NotHeld),
        }
    }

    /// True if some thread (in any process) holds the lock now.
    pub fn is_locked(&self) -> bool {
        match self.raw.try_lock() {
            Ok(Acquired::Clean) => {
                self.raw.unlock();
                false
            }
            Ok(Acquired::OwnerDied) => {
                // Its holder died: free, the death remembered for the next taker.
                self.seg.atomic_u32(POISONED).store(1, Ordering::Release);
                self.raw.mark_consistent();
                self.raw.unlock();
                false
            }
            Err(_) => true, // held (by this thread: Deadlock; by another: WouldBlock)
        }
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[] ShmLock);
