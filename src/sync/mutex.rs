//! `ShmMutex<T>`: a robust mutex guarding `Pod` data, across processes.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::raw::{Acquired, RawMutex, MUTEX_SIZE};
use super::{LockError, OwnerDied, Segment};
use crate::{Error, Result, SegmentKind};

/// Where the value starts, after the mutex.
const DATA: usize = 64;

/// A mutex guarding a `T` in a named segment; any process that opens it
/// by name shares the value. If a holder dies, the next locker gets
/// [`LockError::OwnerDied`] instead of waiting forever.
///
/// ```
/// use shmkit::sync::ShmMutex;
/// # let name = format!("doc-mutex-{}", std::process::id());
/// let m = ShmMutex::create(&name, 0u64)?;
/// *m.lock().map_err(|e| e.to_string())? += 1;
/// let other = ShmMutex::<u64>::open(&name)?; // e.g. in another process
/// assert_eq!(*other.lock().map_err(|e| e.to_string())?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShmMutex<T: Pod> {
    seg: Segment,
    raw: RawMutex,
    _value: PhantomData<T>,
}

/// Exclusive access to a [`ShmMutex`]'s value; unlocks when dropped.
pub struct MutexGuard<'a, T: Pod> {
    mutex: &'a ShmMutex<T>,
}

impl<T: Pod + Send> ShmMutex<T> {
    const LEN: usize = DATA + size_of::<T>();
    const ALIGNED: () = assert!(align_of::<T>() <= DATA, "ShmMutex values must align to at most 64 bytes");

    /// Creates mutex segment `name` holding `value`.
    pub fn create(name: &str, value: T) -> Result<Self> {
        let () = Self::ALIGNED;
        let mut made = Ok(());
        let seg = super::create(name, SegmentKind::Mutex, Self::LEN, |seg| {
            // SAFETY: bytes_at checked the 64 bytes lie in the fresh data, which
            // is 64-aligned and unpublished, so no other process sees it yet.
            made = unsafe { RawMutex::init(seg.bytes_at(0, MUTEX_SIZE)) }.map(drop);
            seg.as_slice_mut()[DATA..].copy_from_slice(bytemuck::bytes_of(&value));
        })?;
        made.map_err(|e| Error::from_io("pthread_mutex_init", name, e))?;
        Ok(Self::wrap(seg))
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(value: T) -> Result<Self> {
        super::with_unique_name(|n| Self::create(n, value))
    }

    /// Opens mutex segment `name`; its size must fit `T`.
    pub fn open(name: &str) -> Result<Self> {
        let () = Self::ALIGNED;
        Ok(Self::wrap(super::open(name, SegmentKind::Mutex, |len| len == Self::LEN)?))
    }

    fn wrap(seg: Segment) -> Self {
        // SAFETY: the segment is a published Mutex segment of LEN bytes, whose
        // creator initialised a mutex at offset 0 (64-aligned); `seg` keeps
        // the mapping alive as long as `raw`, both owned by the result.
        let raw = unsafe { RawMutex::attach(seg.bytes_at(0, MUTEX_SIZE)) };
        ShmMutex { seg, raw, _value: PhantomData }
    }

    /// Locks, waiting as long as it takes.
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        self.finish(self.raw.lock(None))
    }

    /// Locks if no one holds the lock now.
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        self.finish(self.raw.try_lock())
    }

    /// Locks, waiting at most `limit`.
    pub fn lock_timeout(&self, limit: Duration) -> Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        self.finish(self.raw.lock(Some(Instant::now() + limit)))
    }

    fn finish(
        &self,
        got: Result<Acquired, super::raw::Failed>,
    ) -> Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        let guard = MutexGuard { mutex: self };
        match got {
            Ok(Acquired::Clean) => Ok(guard),
            Ok(Acquired::OwnerDied) => {
                let ptr = self.raw_ptr();
                // SAFETY: `ptr` is this mutex, which the guard holds until the
                // mark runs (acknowledge runs it before handing the guard back).
                let mark = Box::new(move || unsafe { RawMutex::attach(ptr as *mut u8) }.mark_consistent());
                Err(LockError::OwnerDied(OwnerDied { guard, mark }))
            }
            Err(f) => {
                std::mem::forget(guard); // nothing to unlock
                Err(LockError::from_raw(f))
            }
        }
    }

    fn raw_ptr(&self) -> usize {
        self.seg.bytes_at(0, MUTEX_SIZE) as usize
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// Keeps the segment after this handle is gone (see [`crate::SharedArray::persist`]).
    pub fn persist(&mut self) {
        self.seg.persist();
    }
}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the value lies at DATA inside the segment (length checked at
        // open/create), aligned (DATA is 64, align_of::<T>() <= 64), and the
        // lock, held by this guard, excludes every other process's access.
        unsafe { &*self.mutex.seg.bytes_at(DATA, size_of::<T>()).cast::<T>() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.mutex.seg.bytes_at(DATA, size_of::<T>()).cast::<T>() }
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.raw.unlock();
    }
}
