//! `ShmRwLock<T>`: many readers or one writer, across processes.
//!
//! A robust mutex (the gate) orders writers and keeps readers out while a
//! writer works. Each reader takes one of 64 slots: it sets the slot's word
//! and holds an exclusive lock on the slot's byte of the segment through
//! its handle's open file (see `segment::liveness`). A writer holds the
//! gate and waits until every set slot's lock is gone, which happens when
//! the reader drops its guard or its process ends in any way: a dead
//! reader never blocks a writer, and no pid is involved, so pid reuse,
//! zombies and PID namespaces cannot fool it.
//!
//! A writer that dies leaves the data suspect: the next locker repairs the
//! gate at once (it stays usable) and raises the `POISONED` word, and
//! every locker is told [`LockError::OwnerDied`] until a writer
//! acknowledges. So a writer that sees owner-died and then times out
//! waiting for readers loses nothing: the next locker is told too.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard as StdGuard};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::raw::{futex_wait, futex_wake_all, left, Acquired, RawMutex, Wait};
use super::{segment_lifetime, LockError, NotSend, OwnerDied};
use crate::kind::SegmentKind;
use crate::segment::{liveness, Segment};
use crate::Result;

const CHANGED: usize = 64;
const POISONED: usize = 68;
const SLOTS: usize = 128;
/// Most readers at once; more wait for a free slot.
const MAX_READERS: usize = 64;
const DATA: usize = SLOTS + 4 * MAX_READERS;

/// A reader-writer lock guarding a `T` in a named segment.
///
/// ```
/// use shmkit::sync::ShmRwLock;
/// # let name = format!("doc-rwlock-{}", std::process::id());
/// let lock = ShmRwLock::create(&name, [0u32; 4])?;
/// lock.write().map_err(|e| e.to_string())?[0] = 7;
/// let (a, b) = (lock.read().map_err(|e| e.to_string())?, lock.read().map_err(|e| e.to_string())?);
/// assert_eq!((a[0], b[0]), (7, 7)); // readers share
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShmRwLock<T: Pod> {
    seg: Segment,
    gate: RawMutex,
    /// Slots this handle's readers hold (bit i: slot i). The kernel never
    /// reports an open file's own locks back to it, so a writer of this
    /// handle learns of them here.
    held: Mutex<u64>,
    _value: PhantomData<T>,
}

/// Shared access; gives its slot back when dropped.
pub struct ReadGuard<'a, T: Pod> {
    lock: &'a ShmRwLock<T>,
    slot: usize,
}

/// Exclusive access; releases the lock when dropped. Not `Send`: the gate
/// is a pthread mutex, released by the thread that took it.
pub struct WriteGuard<'a, T: Pod> {
    lock: &'a ShmRwLock<T>,
    _thread: NotSend,
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
        ShmRwLock { seg, gate, held: Mutex::new(0), _value: PhantomData }
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        self.seg.atomic_u32(at)
    }

    /// Shared access, waiting as long as it takes.
    pub fn read(&self) -> LockResult<ReadGuard<'_, T>> {
        self.read_with(Wait::Forever)
    }

    /// Shared access if no writer holds or waits for the lock now.
    pub fn try_read(&self) -> LockResult<ReadGuard<'_, T>> {
        self.read_with(Wait::No)
    }

    /// Shared access, waiting at most `limit`.
    pub fn read_timeout(&self, limit: Duration) -> LockResult<ReadGuard<'_, T>> {
        self.read_with(Wait::within(limit))
    }

    fn read_with(&self, wait: Wait) -> LockResult<ReadGuard<'_, T>> {
        loop {
            let seen = self.word(CHANGED).load(Ordering::Acquire);
            self.enter(wait)?;
            let slot = self.take_slot();
            self.gate.unlock();
            if let Some(slot) = slot {
                let guard = ReadGuard { lock: self, slot };
                return match self.word(POISONED).load(Ordering::Acquire) {
                    0 => Ok(guard),
                    // Readers cannot repair: only a writer's acknowledge clears it.
                    _ => Err(LockError::OwnerDied(OwnerDied { guard, recover: |_| {} })),
                };
            }
            self.pause(wait, seen)?;
        }
    }

    /// Sleeps until the readers' slots change from `seen`, or 20 ms pass
    /// (a slot freed by a reader's death is never signalled); an error once
    /// `wait` allows no more waiting.
    fn pause<G>(&self, wait: Wait, seen: u32) -> Result<(), LockError<G>> {
        let limit = match wait {
            Wait::No => return Err(LockError::WouldBlock),
            Wait::Until(d) if Instant::now() >= d => return Err(LockError::Timeout),
            Wait::Until(d) => left(Some(d)),
            Wait::Forever => None,
        };
        futex_wait(self.word(CHANGED), seen, Some(limit.unwrap_or(Duration::MAX).min(Duration::from_millis(20))));
        Ok(())
    }

    /// Takes the gate; a holder's death is repaired at once and recorded
    /// in `POISONED`, so the gate stays usable whatever this call does next.
    fn enter<G>(&self, wait: Wait) -> Result<(), LockError<G>> {
        match self.gate.lock_with(wait) {
            Ok(Acquired::Clean) => Ok(()),
            Ok(Acquired::OwnerDied) => {
                self.word(POISONED).store(1, Ordering::Release);
                self.gate.mark_consistent();
                Ok(())
            }
            Err(f) => Err(LockError::from_raw(f)),
        }
    }

    /// A free slot, taken for this handle; called with the gate held, so
    /// no writer checks the slots meanwhile.
    fn take_slot(&self) -> Option<usize> {
        let mut held = lock_held(&self.held);
        let slot = (0..MAX_READERS).filter(|&i| *held & (1 << i) == 0).find(|&i| {
            // Only one open file can hold the byte: a slot whose reader
            // died (word still set) is free again, and taken over here.
            liveness::take_over(self.seg.fd(), liveness::SLOTS + i as u64)
        })?;
        self.word(SLOTS + 4 * slot).store(1, Ordering::Release);
        *held |= 1 << slot;
        Some(slot)
    }

    /// Exclusive access, waiting as long as it takes.
    pub fn write(&self) -> LockResult<WriteGuard<'_, T>> {
        self.write_with(Wait::Forever)
    }

    /// Exclusive access if no one holds the lock now.
    pub fn try_write(&self) -> LockResult<WriteGuard<'_, T>> {
        self.write_with(Wait::No)
    }

    /// Exclusive access, waiting at most `limit`.
    pub fn write_timeout(&self, limit: Duration) -> LockResult<WriteGuard<'_, T>> {
        self.write_with(Wait::within(limit))
    }

    fn write_with(&self, wait: Wait) -> LockResult<WriteGuard<'_, T>> {
        self.enter(wait)?;
        self.seg.pin(); // a forgotten guard must keep the gate mapped
        let guard = WriteGuard { lock: self, _thread: PhantomData };
        loop {
            let seen = self.word(CHANGED).load(Ordering::Acquire);
            if self.readers_gone() {
                break;
            }
            // On an error the guard's drop releases the gate; POISONED
            // stays as it is.
            self.pause(wait, seen)?;
        }
        match self.word(POISONED).load(Ordering::Acquire) {
            0 => Ok(guard),
            _ => Err(LockError::OwnerDied(OwnerDied {
                guard,
                recover: |g| g.lock.word(POISONED).store(0, Ordering::Release),
            })),
        }
    }

    /// True once no reader holds a slot: none of this handle's, and every
    /// set slot's lock gone (dropped, or died with its process). A slot
    /// whose lock state cannot be read counts as held.
    fn readers_gone(&self) -> bool {
        if *lock_held(&self.held) != 0 {
            return false;
        }
        (0..MAX_READERS).all(|i| {
            let word = self.word(SLOTS + 4 * i);
            if word.load(Ordering::Acquire) == 0 {
                return true;
            }
            let gone = liveness::presence(self.seg.fd(), liveness::SLOTS + i as u64) == liveness::Presence::Gone;
            if gone {
                word.store(0, Ordering::Release); // a dead reader's: tidy (the gate keeps readers out)
            }
            gone
        })
    }

    fn value(&self) -> *mut T {
        self.seg.bytes(DATA, size_of::<T>()).cast()
    }
}

segment_lifetime! { impl<T: Pod + Send + Sync> ShmRwLock<T> }

fn lock_held(m: &Mutex<u64>) -> StdGuard<'_, u64> {
    // The bitmap is updated in single statements: consistent after a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Pod + Send + Sync> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: in bounds and aligned (checked at open/create; DATA is a
        // multiple of 64); while this slot is held no writer passes the
        // drain in `write_with`, so nothing writes the value.
        unsafe { &*self.lock.value() }
    }
}

impl<T: Pod> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        let lock = self.lock;
        let mut held = lock_held(&lock.held);
        lock.seg.atomic_u32(SLOTS + 4 * self.slot).store(0, Ordering::Release);
        let _ = liveness::withdraw(lock.seg.fd(), liveness::SLOTS + self.slot as u64);
        *held &= !(1 << self.slot);
        drop(held);
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
        let lock = self.lock;
        lock.gate.unlock();
        lock.seg.unpin();
        lock.seg.atomic_u32(CHANGED).fetch_add(1, Ordering::AcqRel);
        futex_wake_all(lock.seg.atomic_u32(CHANGED));
    }
}

impl<T: Pod + Send + Sync + std::fmt::Debug> std::fmt::Debug for ReadGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReadGuard").field(&**self).finish()
    }
}

impl<T: Pod + Send + Sync + std::fmt::Debug> std::fmt::Debug for WriteGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WriteGuard").field(&**self).finish()
    }
}
