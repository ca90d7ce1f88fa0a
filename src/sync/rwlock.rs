//! `ShmRwLock<T>`: many readers or one writer, across processes.
//!
//! A robust mutex (the gate) orders writers and keeps readers out while a
//! writer works. Each reader takes one of 64 slots (see `segment::slots`):
//! it marks the slot and holds a lock on the slot's byte of the segment
//! through its handle's open file. A writer holds the gate and waits until
//! no slot is held, which happens when each reader drops its guard or its
//! process ends in any way: a dead reader never blocks a writer, and no
//! pid is involved, so pid reuse, zombies and PID namespaces cannot fool it.
//!
//! A thread may read again through the same handle while it reads: the
//! nested guard shares its slot (taking the gate again could wait for a
//! writer that waits for this very slot). A thread that reads and then
//! asks to write would wait for itself: it gets [`LockError::Deadlock`],
//! as a thread that writes and asks again does; so does a nested read
//! through another handle of the same lock.
//!
//! A writer that dies leaves the data suspect: the next locker repairs the
//! gate at once (it stays usable) and raises the `POISONED` word, and
//! every locker is told [`LockError::OwnerDied`] until a writer
//! acknowledges. So a writer that sees owner-died and then times out
//! waiting for readers loses nothing: the next locker is told too.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::lock_error::{LockError, LockTimeoutError, OwnerDied, Refused, TryLockError};
use super::raw::{futex_wait, futex_wake_all, left, Acquired, RawMutex, Wait};
use super::NotSend;
use crate::kind::SegmentKind;
use crate::os::FileId;
use crate::segment::slots::SlotTable;
use crate::segment::{liveness, Segment};
use crate::{Record, Result};

const CHANGED: usize = 64;
const POISONED: usize = 68;
const SLOTS: usize = 128;
/// Most readers at once; more wait for a free slot.
const MAX_READERS: usize = 64;
const DATA: usize = SLOTS + MAX_READERS;

/// A reader-writer lock guarding a `T` in a named segment.
///
/// ```
/// use shmkit::sync::ShmRwLock;
/// # let name = format!("shmkit-doc-rwlock-{}", std::process::id());
/// let lock = ShmRwLock::create(&name, [0u32; 4])?;
/// lock.write().map_err(|e| e.to_string())?[0] = 7;
/// let (a, b) = (lock.read().map_err(|e| e.to_string())?, lock.read().map_err(|e| e.to_string())?);
/// assert_eq!((a[0], b[0]), (7, 7)); // readers share
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShmRwLock<T: Record> {
    seg: Segment,
    gate: RawMutex,
    readers: SlotTable,
    /// Names this handle in the thread-local record of reads: unique for
    /// the process's life (an address could be a dropped handle's).
    handle: u64,
    _value: PhantomData<T>,
}

/// Shared access; gives its slot back when the last guard of this
/// thread's read through this handle is dropped. Not `Send`, like std's
/// read guard: the thread that reads is the one that may not then ask to
/// write.
pub struct ReadGuard<'a, T: Record> {
    lock: &'a ShmRwLock<T>,
    slot: usize,
    /// How many guards of this thread's read share the slot: counted here,
    /// not in the thread-local record, which may be gone when a guard
    /// kept in another thread-local is dropped.
    guards: Rc<Cell<usize>>,
    _thread: NotSend,
}

/// Exclusive access; releases the lock when dropped. Not `Send`: the gate
/// is a pthread mutex, released by the thread that took it.
pub struct WriteGuard<'a, T: Record> {
    lock: &'a ShmRwLock<T>,
    _thread: NotSend,
}

/// A read this thread holds: the lock (its segment), the handle it came
/// through, the slot, and how many guards share it.
struct Reading {
    lock: FileId,
    handle: u64,
    slot: usize,
    guards: Rc<Cell<usize>>,
}

thread_local! {
    static READING: RefCell<Vec<Reading>> = const { RefCell::new(Vec::new()) };
}

impl<T: Record> ShmRwLock<T> {
    const LEN: usize = DATA + size_of::<T>();
    const ALIGNED: () = assert!(align_of::<T>() <= 64, "ShmRwLock values must align to at most 64 bytes");

    fn types() -> Result<[(&'static str, String); 1]> {
        Ok([("value", crate::npy::record::dtype_of::<T>()?)])
    }

    /// Creates lock segment `name` holding `value`.
    pub fn create(name: &str, value: T) -> Result<Self> {
        let () = Self::ALIGNED;
        let init = |seg: &Segment| seg.write(DATA, bytemuck::bytes_of(&value));
        Ok(Self::wrap(super::create_locked(name, SegmentKind::RwLock, &Self::types()?, Self::LEN, init)?))
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(value: T) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, value))
    }

    /// Opens lock segment `name`, which must hold a `T` (by its numpy
    /// dtype: [`Error::WrongType`](crate::Error::WrongType) otherwise).
    pub fn open(name: &str) -> Result<Self> {
        let () = Self::ALIGNED;
        let seg = super::open(name, SegmentKind::RwLock, &Self::types()?, |len| len == Self::LEN)?;
        Ok(Self::wrap(super::attach_lock(seg)))
    }

    fn wrap((seg, gate): (Segment, RawMutex)) -> Self {
        static HANDLES: AtomicU64 = AtomicU64::new(1);
        let readers = SlotTable::new(SLOTS, MAX_READERS, liveness::SLOTS);
        let handle = HANDLES.fetch_add(1, Ordering::Relaxed);
        ShmRwLock { seg, gate, readers, handle, _value: PhantomData }
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        self.seg.atomic_u32(at)
    }

    /// This handle, as the thread-local record of reads names it.
    fn handle(&self) -> u64 {
        self.handle
    }

    /// Shared access, waiting as long as it takes.
    pub fn read(&self) -> Result<ReadGuard<'_, T>, LockError<ReadGuard<'_, T>>> {
        self.read_with(Wait::Forever).map_err(LockError::from_refused)
    }

    /// Shared access if no writer holds or waits for the lock now.
    pub fn try_read(&self) -> Result<ReadGuard<'_, T>, TryLockError<ReadGuard<'_, T>>> {
        self.read_with(Wait::No).map_err(TryLockError::from_refused)
    }

    /// Shared access, waiting at most `limit`.
    pub fn read_timeout(&self, limit: Duration) -> Result<ReadGuard<'_, T>, LockTimeoutError<ReadGuard<'_, T>>> {
        self.read_with(Wait::within(limit)).map_err(LockTimeoutError::from_refused)
    }

    fn read_with(&self, wait: Wait) -> Result<ReadGuard<'_, T>, Refused<ReadGuard<'_, T>>> {
        self.seg.check_process().map_err(|_| Refused::Inherited)?;
        let (id, me) = (self.seg.id(), self.handle());
        let nested = READING.with_borrow_mut(|reads| {
            let mut mine = reads.iter_mut().filter(|r| r.lock == id);
            match mine.next() {
                Some(r) if r.handle == me => {
                    r.guards.set(r.guards.get() + 1);
                    Ok(Some((r.slot, r.guards.clone())))
                }
                Some(_) => Err(Refused::Deadlock), // reads it through another handle
                None => Ok(None),
            }
        })?;
        let (slot, guards) = match nested {
            Some(shared) => shared,
            None => self.take_slot_through_gate(wait)?,
        };
        let guard = ReadGuard { lock: self, slot, guards, _thread: PhantomData };
        match self.word(POISONED).load(Ordering::Acquire) {
            0 => Ok(guard),
            // Readers cannot repair: only a writer's acknowledge clears it.
            _ => Err(Refused::OwnerDied(OwnerDied::new(guard, |_| {}))),
        }
    }

    /// Takes a slot through the gate (no writer checks the slots while a
    /// reader holds it), waiting for a free one as `wait` allows.
    fn take_slot_through_gate<G>(&self, wait: Wait) -> Result<(usize, Rc<Cell<usize>>), Refused<G>> {
        loop {
            let seen = self.word(CHANGED).load(Ordering::Acquire);
            self.enter(wait)?;
            let slot = self.readers.take(&self.seg);
            self.gate.unlock();
            if let Some(slot) = slot {
                let guards = Rc::new(Cell::new(1));
                let reading = Reading { lock: self.seg.id(), handle: self.handle(), slot, guards: guards.clone() };
                READING.with_borrow_mut(|reads| reads.push(reading));
                return Ok((slot, guards));
            }
            self.pause(wait, seen)?;
        }
    }

    /// Sleeps until the readers' slots change from `seen`, or a moment
    /// passes (a slot freed by a reader's death is never signalled); an
    /// error once `wait` allows no more waiting.
    fn pause<G>(&self, wait: Wait, seen: u32) -> Result<(), Refused<G>> {
        let limit = match wait {
            Wait::No => return Err(Refused::WouldBlock),
            Wait::Until(d) if Instant::now() >= d => return Err(Refused::Timeout),
            Wait::Until(d) => left(Some(d)),
            Wait::Forever => None,
        };
        futex_wait(self.word(CHANGED), seen, limit);
        Ok(())
    }

    /// Takes the gate; a holder's death is repaired at once and recorded
    /// in `POISONED`, so the gate stays usable whatever this call does next.
    fn enter<G>(&self, wait: Wait) -> Result<(), Refused<G>> {
        match self.gate.lock_with(wait) {
            Ok(Acquired::Clean) => Ok(()),
            Ok(Acquired::OwnerDied) => {
                self.word(POISONED).store(1, Ordering::Release);
                self.gate.mark_consistent();
                Ok(())
            }
            Err(f) => Err(Refused::from(f)),
        }
    }

    /// Exclusive access, waiting as long as it takes.
    pub fn write(&self) -> Result<WriteGuard<'_, T>, LockError<WriteGuard<'_, T>>> {
        self.write_with(Wait::Forever).map_err(LockError::from_refused)
    }

    /// Exclusive access if no one holds the lock now.
    pub fn try_write(&self) -> Result<WriteGuard<'_, T>, TryLockError<WriteGuard<'_, T>>> {
        self.write_with(Wait::No).map_err(TryLockError::from_refused)
    }

    /// Exclusive access, waiting at most `limit`.
    pub fn write_timeout(&self, limit: Duration) -> Result<WriteGuard<'_, T>, LockTimeoutError<WriteGuard<'_, T>>> {
        self.write_with(Wait::within(limit)).map_err(LockTimeoutError::from_refused)
    }

    fn write_with(&self, wait: Wait) -> Result<WriteGuard<'_, T>, Refused<WriteGuard<'_, T>>> {
        self.seg.check_process().map_err(|_| Refused::Inherited)?;
        let id = self.seg.id();
        if READING.with_borrow(|reads| reads.iter().any(|r| r.lock == id)) {
            return Err(Refused::Deadlock); // it would wait for its own read guard
        }
        self.enter(wait)?;
        self.seg.pin(); // a forgotten guard must keep the gate mapped
        let guard = WriteGuard { lock: self, _thread: PhantomData };
        loop {
            let seen = self.word(CHANGED).load(Ordering::Acquire);
            // Readers take slots only through the gate, which this writer
            // holds: none appears while it looks.
            if !self.readers.any_held(&self.seg) {
                break;
            }
            // On an error the guard's drop releases the gate; POISONED
            // stays as it is.
            self.pause(wait, seen)?;
        }
        match self.word(POISONED).load(Ordering::Acquire) {
            0 => Ok(guard),
            _ => Err(Refused::OwnerDied(OwnerDied::new(guard, |g| g.lock.word(POISONED).store(0, Ordering::Release)))),
        }
    }

    fn value(&self) -> *mut T {
        self.seg.bytes(DATA, size_of::<T>()).cast()
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[T: Record] ShmRwLock<T>);

impl<T: Record> Drop for ShmRwLock<T> {
    fn drop(&mut self) {
        // A read guard forgotten (`mem::forget`) on this thread leaves its
        // record: forget it with the handle, so that a later handle of the
        // same lock on this thread is not refused as a second reader.
        let me = self.handle;
        let _ = READING.try_with(|reads| reads.borrow_mut().retain(|r| r.handle != me));
    }
}

impl<T: Record> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: in bounds and aligned (checked at open/create; DATA is a
        // multiple of 64); while this slot is held no writer passes the
        // drain in `write_with`, so nothing writes the value.
        unsafe { &*self.lock.value() }
    }
}

impl<T: Record> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        let lock = self.lock;
        self.guards.set(self.guards.get() - 1);
        if self.guards.get() > 0 {
            return; // a nested guard: the slot stays with the others
        }
        // The last guard of this read: its record goes (unless the thread's
        // records are torn down already), then the slot.
        let _ = READING.try_with(|reads| reads.borrow_mut().retain(|r| !Rc::ptr_eq(&r.guards, &self.guards)));
        lock.readers.give_back(&lock.seg, self.slot);
        lock.seg.atomic_u32(CHANGED).fetch_add(1, Ordering::AcqRel);
        futex_wake_all(lock.seg.atomic_u32(CHANGED));
    }
}

impl<T: Record> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: in bounds and aligned as above; the writer holds the gate and
        // every reader slot is empty, so this process has exclusive access.
        unsafe { &*self.lock.value() }
    }
}

impl<T: Record> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.value() }
    }
}

impl<T: Record> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        let lock = self.lock;
        lock.gate.unlock();
        lock.seg.unpin();
        lock.seg.atomic_u32(CHANGED).fetch_add(1, Ordering::AcqRel);
        futex_wake_all(lock.seg.atomic_u32(CHANGED));
    }
}

impl<T: Record + std::fmt::Debug> std::fmt::Debug for ReadGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReadGuard").field(&**self).finish()
    }
}

impl<T: Record + std::fmt::Debug> std::fmt::Debug for WriteGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WriteGuard").field(&**self).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_then_writing_on_one_thread_is_a_deadlock_error_and_nested_reads_share_a_slot() {
        let lock = ShmRwLock::create(&format!("shmkit-unit-rw-{}", std::process::id()), 5u64).unwrap();
        let a = lock.read().unwrap();
        let b = lock.read().unwrap(); // nested: no gate, same slot
        assert_eq!(a.slot, b.slot);
        assert!(matches!(lock.write_timeout(Duration::from_secs(5)), Err(LockTimeoutError::Deadlock)));
        let other = ShmRwLock::<u64>::open(lock.name()).unwrap();
        assert!(matches!(other.read(), Err(LockError::Deadlock)), "a nested read through another handle");
        drop(a);
        assert!(lock.readers.held_here(), "the nested guard keeps the slot");
        drop(b);
        assert!(!lock.readers.held_here());
        *lock.write().unwrap() += 1;
        assert_eq!(*other.read().unwrap(), 6);
    }
}
