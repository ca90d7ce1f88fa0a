//! `ShmRwLock<T>`: many readers or one writer, across processes.
//!
//! A robust mutex (the gate) orders writers and keeps readers out while a
//! writer works; each reader registers its pid in a slot. A writer holds
//! the gate and waits until no slot is taken. Robustness: a dead writer
//! is reported to the next locker like a dead [`ShmMutex`](super::ShmMutex)
//! holder; a dead reader's slot is reclaimed by the next writer, which
//! checks each slot's process is alive.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::raw::{futex_wait, futex_wake_all, left, Acquired, RawMutex};
use super::{segment_lifetime, LockError, OwnerDied};
use crate::kind::SegmentKind;
use crate::segment::Segment;
use crate::Result;

const CHANGED: usize = 64;
const SLOTS: usize = 128;
/// Most readers at once; more wait for a free slot.
const MAX_READERS: usize = 64;
const DATA: usize = SLOTS + 4 * MAX_READERS;

/// A reader-writer lock guarding a `T` in a named segment.
pub struct ShmRwLock<T: Pod> {
    seg: Segment,
    gate: RawMutex,
    _value: PhantomData<T>,
}

/// Shared access; unregisters the reader when dropped.
pub struct ReadGuard<'a, T: Pod> {
    lock: &'a ShmRwLock<T>,
    slot: usize,
}

/// Exclusive access; releases the lock when dropped.
pub struct WriteGuard<'a, T: Pod> {
    lock: &'a ShmRwLock<T>,
}

type LockResult<G> = Result<G, LockError<G>>;

impl<T: Pod + Send + Sync> ShmRwLock<T> {
    const LEN: usize = DATA + size_of::<T>();
    const ALIGNED: () = assert!(align_of::<T>() <= 64, "ShmRwLock values must align to at most 64 bytes");

    /// Creates lock segment `name` holding `value`.
    pub fn create(name: &str, value: T) -> Result<Self> {
        let () = Self::ALIGNED;
        let init = |seg: &Segment| seg.write(DATA, bytemuck::bytes_of(&value));
        Ok(Self::wrap(super::create_locked(name, SegmentKind::RwLock, Self::LEN, init)?))
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(value: T) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, value))
    }

    /// Opens lock segment `name`; its size must fit `T`.
    pub fn open(name: &str) -> Result<Self> {
        let () = Self::ALIGNED;
        let seg = super::open(name, SegmentKind::RwLock, |len| len == Self::LEN)?;
        Ok(Self::wrap(super::attach_lock(seg)))
    }

    fn wrap((seg, gate): (Segment, RawMutex)) -> Self {
        ShmRwLock { seg, gate, _value: PhantomData }
    }

    fn slot(&self, i: usize) -> &AtomicU32 {
        self.seg.atomic_u32(SLOTS + 4 * i)
    }

    fn changed(&self) -> &AtomicU32 {
        self.seg.atomic_u32(CHANGED)
    }

    /// Shared access, waiting as long as it takes.
    pub fn read(&self) -> LockResult<ReadGuard<'_, T>> {
        self.read_until(None)
    }

    /// Shared access, waiting at most `limit`.
    pub fn read_timeout(&self, limit: Duration) -> LockResult<ReadGuard<'_, T>> {
        self.read_until(Some(Instant::now() + limit))
    }

    fn read_until(&self, deadline: Option<Instant>) -> LockResult<ReadGuard<'_, T>> {
        loop {
            let seen = self.changed().load(Ordering::Acquire);
            let died = match self.gate.lock(deadline) {
                Ok(got) => got == Acquired::OwnerDied,
                Err(f) => return Err(LockError::from_raw(f)),
            };
            if died {
                self.gate.mark_consistent(); // readers only report it: the gate stays usable
            }
            let slot = (0..MAX_READERS)
                .find(|&i| self.slot(i).compare_exchange(0, me(), Ordering::AcqRel, Ordering::Relaxed).is_ok());
            self.gate.unlock();
            if let Some(slot) = slot {
                let guard = ReadGuard { lock: self, slot };
                return match died {
                    false => Ok(guard),
                    true => Err(LockError::OwnerDied(OwnerDied { guard, mark: Box::new(|| {}) })),
                };
            }
            if left(deadline) == Some(Duration::ZERO) {
                return Err(LockError::Timeout);
            }
            futex_wait(self.changed(), seen, left(deadline).or(Some(Duration::from_millis(50))));
        }
    }

    /// Exclusive access, waiting as long as it takes.
    pub fn write(&self) -> LockResult<WriteGuard<'_, T>> {
        self.write_until(None)
    }

    /// Exclusive access, waiting at most `limit`.
    pub fn write_timeout(&self, limit: Duration) -> LockResult<WriteGuard<'_, T>> {
        self.write_until(Some(Instant::now() + limit))
    }

    fn write_until(&self, deadline: Option<Instant>) -> LockResult<WriteGuard<'_, T>> {
        let died = match self.gate.lock(deadline) {
            Ok(got) => got == Acquired::OwnerDied,
            Err(f) => return Err(LockError::from_raw(f)),
        };
        let guard = WriteGuard { lock: self };
        loop {
            let seen = self.changed().load(Ordering::Acquire);
            if self.readers_gone() {
                break;
            }
            if left(deadline) == Some(Duration::ZERO) {
                return Err(LockError::Timeout); // the guard's drop releases the gate
            }
            // Bounded sleeps: a reader that died never signals.
            futex_wait(
                self.changed(),
                seen,
                Some(left(deadline).unwrap_or(Duration::MAX).min(Duration::from_millis(20))),
            );
        }
        match died {
            false => Ok(guard),
            true => Err(LockError::OwnerDied(OwnerDied { guard, mark: self.gate.consistency_mark() })),
        }
    }

    /// True once no live reader holds a slot; frees slots of dead readers.
    fn readers_gone(&self) -> bool {
        (0..MAX_READERS).all(|i| match self.slot(i).load(Ordering::Acquire) {
            0 => true,
            pid if !alive(pid) => {
                let _ = self.slot(i).compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
                true
            }
            _ => false,
        })
    }

    fn value(&self) -> *mut T {
        self.seg.bytes(DATA, size_of::<T>()).cast()
    }
}

segment_lifetime! { impl<T: Pod + Send + Sync> ShmRwLock<T> }

fn me() -> u32 {
    std::process::id()
}

/// True unless process `pid` is known to be gone. `pid` comes from shared
/// memory, so anything that is not a valid pid counts as gone (its slot is
/// freed); a process we may not signal (EPERM) is alive.
fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().filter(|&p| p > 0).and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(rustix::io::Errno::SRCH))
}

impl<T: Pod + Send + Sync> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: in bounds and aligned (checked at open/create; DATA is a
        // multiple of 64); while a reader slot is held no writer passes the
        // drain in `write_until`, so nothing writes the value.
        unsafe { &*self.lock.value() }
    }
}

impl<T: Pod> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        let lock = self.lock;
        lock.seg.atomic_u32(SLOTS + 4 * self.slot).store(0, Ordering::Release);
        lock.seg.atomic_u32(CHANGED).fetch_add(1, Ordering::AcqRel);
        futex_wake_all(lock.seg.atomic_u32(CHANGED));
    }
}

impl<T: Pod + Send + Sync> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: in bounds and aligned as above; the writer holds the gate and
        // every reader slot is empty, so this process has exclusive access.
        unsafe { &*self.lock.value() }
    }
}

impl<T: Pod + Send + Sync> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.value() }
    }
}

impl<T: Pod> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.gate.unlock();
        let changed = self.lock.seg.atomic_u32(CHANGED);
        changed.fetch_add(1, Ordering::AcqRel);
        futex_wake_all(changed);
    }
}
