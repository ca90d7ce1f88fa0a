//! `ShmMutex<T>`: a robust mutex guarding `Pod` data, across processes.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::lock_error::{LockError, LockTimeoutError, OwnerDied, Refused, TryLockError};
use super::raw::{Acquired, RawMutex};
use super::NotSend;
use crate::kind::SegmentKind;
use crate::segment::Segment;
use crate::{Record, Result};

/// Where the value starts, after the mutex.
const DATA: usize = 64;
/// A word after the mutex: 1 while a holder's death is unacknowledged.
const POISONED: usize = 48;
const _: () = assert!(super::raw::MUTEX_SIZE <= POISONED);

/// A mutex guarding a `T` in a named segment; any process that opens it
/// by name shares the value. If a holder dies, the next locker gets
/// [`LockError::OwnerDied`] instead of waiting forever, and so does every
/// later locker until one of them [`acknowledge`](OwnerDied::acknowledge)s
/// the death: a guard released without acknowledging leaves the lock
/// usable and the death still reported (rather than, as POSIX has it,
/// unusable for everyone).
///
/// ```
/// use shmkit::sync::ShmMutex;
/// # let name = format!("shmkit-doc-mutex-{}", std::process::id());
/// let m = ShmMutex::create(&name, 0u64)?;
/// *m.lock().map_err(|e| e.to_string())? += 1;
/// let other = ShmMutex::<u64>::open(&name)?; // e.g. in another process
/// assert_eq!(*other.lock().map_err(|e| e.to_string())?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShmMutex<T: Record> {
    seg: Segment,
    raw: RawMutex,
    _value: PhantomData<T>,
}

/// Exclusive access to a [`ShmMutex`]'s value; unlocks when dropped.
///
/// Not `Send`, like `std::sync::MutexGuard`: a pthread mutex belongs to
/// the thread that locked it. Were the guard moved to another thread and
/// its locking thread to exit, the kernel would hand the mutex to the next
/// locker as owner-died while this guard still gave access: two guards.
pub struct MutexGuard<'a, T: Record> {
    mutex: &'a ShmMutex<T>,
    _thread: NotSend,
}

impl<T: Record> ShmMutex<T> {
    const LEN: usize = DATA + size_of::<T>();
    const ALIGNED: () = assert!(align_of::<T>() <= DATA, "ShmMutex values must align to at most 64 bytes");

    fn types() -> Result<[(&'static str, String); 1]> {
        Ok([("value", crate::npy::record::dtype_of::<T>()?)])
    }

    /// Creates mutex segment `name` holding `value`.
    pub fn create(name: &str, value: T) -> Result<Self> {
        let () = Self::ALIGNED;
        let init = |seg: &Segment| seg.write(DATA, bytemuck::bytes_of(&value));
        Ok(Self::wrap(super::create_locked(name, SegmentKind::Mutex, &Self::types()?, Self::LEN, init)?))
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(value: T) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, value))
    }

    /// Opens mutex segment `name`, which must hold a `T` (by its numpy
    /// dtype: [`Error::WrongType`](crate::Error::WrongType) otherwise).
    pub fn open(name: &str) -> Result<Self> {
        let () = Self::ALIGNED;
        let seg = super::open(name, SegmentKind::Mutex, &Self::types()?, |len| len == Self::LEN)?;
        Ok(Self::wrap(super::attach_lock(seg)))
    }

    fn wrap((seg, raw): (Segment, RawMutex)) -> Self {
        ShmMutex { seg, raw, _value: PhantomData }
    }

    /// Locks, waiting as long as it takes.
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        self.finish(self.raw.lock(None)).map_err(LockError::from_refused)
    }

    /// Locks if no one holds the lock now.
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        self.finish(self.raw.try_lock()).map_err(TryLockError::from_refused)
    }

    /// Locks, waiting at most `limit` (`Duration::MAX`: as long as it takes).
    pub fn lock_timeout(&self, limit: Duration) -> Result<MutexGuard<'_, T>, LockTimeoutError<MutexGuard<'_, T>>> {
        self.finish(self.raw.lock(super::deadline(limit))).map_err(LockTimeoutError::from_refused)
    }

    fn finish(
        &self,
        got: Result<Acquired, super::raw::Failed>,
    ) -> Result<MutexGuard<'_, T>, Refused<MutexGuard<'_, T>>> {
        let got = got.map_err(Refused::from)?;
        self.seg.pin(); // a forgotten guard must keep the mutex mapped
        let poisoned = self.seg.atomic_u32(POISONED);
        if got == Acquired::OwnerDied {
            // Marked in the segment, then made consistent at once: the death
            // is remembered there until acknowledged, and the lock stays
            // usable whatever this guard's holder does next.
            poisoned.store(1, Ordering::Release);
            self.raw.mark_consistent();
        }
        let guard = MutexGuard { mutex: self, _thread: PhantomData };
        match poisoned.load(Ordering::Acquire) {
            0 => Ok(guard),
            _ => Err(Refused::OwnerDied(OwnerDied::new(guard, |g| {
                g.mutex.seg.atomic_u32(POISONED).store(0, Ordering::Release)
            }))),
        }
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[T: Record] ShmMutex<T>);

impl<T: Record> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the value lies at DATA inside the segment (length checked at
        // open/create), aligned (DATA is 64, align_of::<T>() <= 64), and the
        // lock, held by this guard, excludes every other process's access.
        unsafe { &*self.mutex.seg.bytes(DATA, size_of::<T>()).cast::<T>() }
    }
}

impl<T: Record> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.mutex.seg.bytes(DATA, size_of::<T>()).cast::<T>() }
    }
}

impl<T: Record> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.raw.unlock();
        self.mutex.seg.unpin();
    }
}

impl<T: Record + std::fmt::Debug> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MutexGuard").field(&**self).finish()
    }
}
