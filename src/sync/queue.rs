//! `ShmQueue<T>`: a bounded multi-producer multi-consumer queue of `Pod`
//! records in a named segment, with `close()` for end-of-stream.
//!
//! A robust mutex guards the ring; producers and consumers that must wait
//! sleep on futex sequence words outside the lock. Each critical section
//! copies the record first and moves the index last, with one store, so
//! the ring is consistent at every instant: a process killed inside one
//! leaves either the whole operation or none of it, and the next locker
//! carries on (the lock reports the death; the queue repairs nothing).
//! What a killed process can lose: a consumer killed inside `pop` after it
//! moved the head and before `pop` returned loses that one record; a
//! producer killed inside `push` either pushed or did not.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::raw::{futex_wait, futex_wake_all, left, Acquired, Failed, RawMutex, Wait};
use super::{queue_lifetime, Timeout};
use crate::kind::SegmentKind;
use crate::segment::Segment;
use crate::{Error, Result};

const CAPACITY: usize = 64;
const ITEM_SIZE: usize = 72;
const HEAD: usize = 80;
const TAIL: usize = 88;
const CLOSED: usize = 96;
const NOT_EMPTY: usize = 128;
const POP_WAITERS: usize = 132;
const NOT_FULL: usize = 192;
const PUSH_WAITERS: usize = 196;
const RING: usize = 256;

/// Why a push did not happen; hands the record back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError<T> {
    /// `try_push`: the queue is full.
    #[error("the queue is full")]
    Full(T),
    /// `push_timeout`: no room in time.
    #[error("no room in the queue in time")]
    Timeout(T),
    /// The queue was closed.
    #[error("the queue is closed")]
    Closed(T),
    /// `try_push`: the queue's internal lock stayed held for over a
    /// millisecond (its critical sections take well under a microsecond):
    /// a holder is stopped or starved. `push_timeout` waits longer.
    #[error("the queue's lock is held by a stopped or starved process")]
    Busy(T),
    /// The queue's lock was overwritten by another process; the queue can
    /// no longer be used safely.
    #[error("the queue's lock is corrupted")]
    Broken(T),
}

/// Why a pop returned no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PopError {
    /// `try_pop`: the queue is empty right now.
    #[error("the queue is empty")]
    Empty,
    /// `pop_timeout`: nothing arrived in time.
    #[error("nothing arrived in time")]
    Timeout,
    /// The queue is closed and drained: end of stream.
    #[error("the queue is closed and empty")]
    Closed,
    /// `try_pop`: the queue's internal lock stayed held for over a
    /// millisecond: a holder is stopped or starved.
    #[error("the queue's lock is held by a stopped or starved process")]
    Busy,
    /// The queue's lock was overwritten by another process.
    #[error("the queue's lock is corrupted")]
    Broken,
}

/// Why the internal lock was not taken.
enum Stuck {
    /// Not in time.
    Busy,
    /// Corrupted by another process.
    Broken,
}

/// How long `try_` forms wait for the internal lock: far past any critical
/// section, short enough not to block a caller that asked not to wait.
const TRY_LOCK_WAIT: Duration = Duration::from_millis(1);

/// A bounded MPMC queue of `T` records shared by processes.
///
/// ```
/// use shmkit::sync::{PopError, ShmQueue};
/// # let name = format!("doc-queue-{}", std::process::id());
/// let q = ShmQueue::<u64>::create(&name, 1024)?;
/// q.push(7).unwrap();
/// q.close();
/// let consumer = ShmQueue::<u64>::open(&name)?; // e.g. in another process
/// assert_eq!(consumer.pop(), Ok(7));
/// assert_eq!(consumer.pop(), Err(PopError::Closed)); // end of stream
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ShmQueue<T: Pod> {
    seg: Segment,
    lock: RawMutex,
    capacity: u64,
    _item: PhantomData<T>,
}

impl<T: Pod + Send> ShmQueue<T> {
    const ALIGNED: () =
        assert!(align_of::<T>() <= 64 && size_of::<T>() > 0, "queue records: 1 byte or more, aligned to at most 64");

    fn len_for(capacity: u64) -> Option<usize> {
        usize::try_from(capacity).ok()?.checked_mul(size_of::<T>())?.checked_add(RING)
    }

    /// Creates queue segment `name` with room for `capacity` records.
    pub fn create(name: &str, capacity: u64) -> Result<Self> {
        let () = Self::ALIGNED;
        let len = Self::len_for(capacity).filter(|_| capacity > 0);
        let len = len.ok_or_else(|| Error::InvalidArgument(format!("queue capacity {capacity}")))?;
        let locked = super::create_locked(name, SegmentKind::Queue, len, |seg| {
            seg.atomic_u64(CAPACITY).store(capacity, Ordering::Relaxed);
            seg.atomic_u64(ITEM_SIZE).store(size_of::<T>() as u64, Ordering::Relaxed);
        })?;
        Ok(Self::wrap(locked, capacity))
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(capacity: u64) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, capacity))
    }

    /// Opens queue segment `name`; its record size must be `T`'s.
    pub fn open(name: &str) -> Result<Self> {
        let () = Self::ALIGNED;
        let seg = super::open(name, SegmentKind::Queue, |len| len >= RING)?;
        let capacity = seg.atomic_u64(CAPACITY).load(Ordering::Relaxed);
        let item = seg.atomic_u64(ITEM_SIZE).load(Ordering::Relaxed);
        if item != size_of::<T>() as u64 || Self::len_for(capacity) != Some(seg.data_len()) || capacity == 0 {
            let found = format!("records of {item} bytes, capacity {capacity}, in {} bytes", seg.data_len());
            return Err(Error::bad_header(
                name,
                format!("queue of {found}: not one of {}-byte records", size_of::<T>()),
            ));
        }
        Ok(Self::wrap(super::attach_lock(seg), capacity))
    }

    fn wrap((seg, lock): (Segment, RawMutex), capacity: u64) -> Self {
        ShmQueue { seg, lock, capacity, _item: PhantomData }
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        self.seg.atomic_u32(at)
    }

    fn index(&self, at: usize) -> &AtomicU64 {
        self.seg.atomic_u64(at)
    }

    /// Takes the internal lock, waiting as `wait` says. Its critical
    /// sections leave the ring consistent at every store, so a holder's
    /// death needs no repair.
    fn enter(&self, wait: Wait) -> Result<(), Stuck> {
        match self.lock.lock_with(wait) {
            Ok(Acquired::Clean) => Ok(()),
            Ok(Acquired::OwnerDied) => {
                self.lock.mark_consistent();
                Ok(())
            }
            Err(Failed::Timeout | Failed::WouldBlock) => Err(Stuck::Busy),
            // Only a lock another process overwrote gets here: going on
            // without it would race.
            Err(_) => Err(Stuck::Broken),
        }
    }

    /// How long a call waits for the internal lock: a blocking call as
    /// long as it takes, a `_timeout` call until its deadline, a `try_`
    /// call [`TRY_LOCK_WAIT`].
    fn lock_wait(deadline: Option<Instant>, block: bool) -> Wait {
        match (block, deadline) {
            (true, None) => Wait::Forever,
            (true, Some(d)) => Wait::Until(d),
            (false, _) => Wait::within(TRY_LOCK_WAIT),
        }
    }

    /// Pushes `item`, waiting for room as long as it takes.
    pub fn push(&self, item: T) -> Result<(), PushError<T>> {
        self.push_until(item, None, true)
    }

    /// Pushes `item` if there is room now.
    pub fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        self.push_until(item, None, false)
    }

    /// Pushes `item`, waiting at most `limit` for room.
    pub fn push_timeout(&self, item: T, limit: Duration) -> Result<(), PushError<T>> {
        self.push_until(item, super::deadline(limit), true)
    }

    fn push_until(&self, item: T, deadline: Option<Instant>, block: bool) -> Result<(), PushError<T>> {
        loop {
            let seen = self.word(NOT_FULL).load(Ordering::SeqCst);
            match (self.enter(Self::lock_wait(deadline, block)), block) {
                (Ok(()), _) => {}
                (Err(Stuck::Busy), false) => return Err(PushError::Busy(item)),
                (Err(Stuck::Busy), true) => return Err(PushError::Timeout(item)),
                (Err(Stuck::Broken), _) => return Err(PushError::Broken(item)),
            }
            if self.word(CLOSED).load(Ordering::Acquire) != 0 {
                self.lock.unlock();
                return Err(PushError::Closed(item));
            }
            let (head, tail) = (self.index(HEAD).load(Ordering::Acquire), self.index(TAIL).load(Ordering::Acquire));
            if tail.wrapping_sub(head) < self.capacity {
                self.slot_write(tail, &item);
                self.index(TAIL).store(tail.wrapping_add(1), Ordering::Release);
                self.lock.unlock();
                self.signal(NOT_EMPTY, POP_WAITERS);
                return Ok(());
            }
            self.lock.unlock();
            match (block, left(deadline)) {
                (false, _) => return Err(PushError::Full(item)),
                (true, Some(Duration::ZERO)) => return Err(PushError::Timeout(item)),
                (true, limit) => self.sleep(NOT_FULL, PUSH_WAITERS, seen, limit),
            }
        }
    }

    /// Pops the oldest record, waiting as long as it takes;
    /// [`PopError::Closed`] once the queue is closed and drained.
    pub fn pop(&self) -> Result<T, PopError> {
        self.pop_until(None, true)
    }

    /// Pops a record if one is there now.
    pub fn try_pop(&self) -> Result<T, PopError> {
        self.pop_until(None, false)
    }

    /// Pops a record, waiting at most `limit`.
    pub fn pop_timeout(&self, limit: Duration) -> Result<T, PopError> {
        self.pop_until(super::deadline(limit), true)
    }

    fn pop_until(&self, deadline: Option<Instant>, block: bool) -> Result<T, PopError> {
        loop {
            let seen = self.word(NOT_EMPTY).load(Ordering::SeqCst);
            match (self.enter(Self::lock_wait(deadline, block)), block) {
                (Ok(()), _) => {}
                (Err(Stuck::Busy), false) => return Err(PopError::Busy),
                (Err(Stuck::Busy), true) => return Err(PopError::Timeout),
                (Err(Stuck::Broken), _) => return Err(PopError::Broken),
            }
            let (head, tail) = (self.index(HEAD).load(Ordering::Acquire), self.index(TAIL).load(Ordering::Acquire));
            if head != tail {
                let item = self.slot_read(head);
                self.index(HEAD).store(head.wrapping_add(1), Ordering::Release);
                self.lock.unlock();
                self.signal(NOT_FULL, PUSH_WAITERS);
                return Ok(item);
            }
            let closed = self.word(CLOSED).load(Ordering::Acquire) != 0;
            self.lock.unlock();
            match (closed, block, left(deadline)) {
                (true, _, _) => return Err(PopError::Closed),
                (_, false, _) => return Err(PopError::Empty),
                (_, true, Some(Duration::ZERO)) => return Err(PopError::Timeout),
                (_, true, limit) => self.sleep(NOT_EMPTY, POP_WAITERS, seen, limit),
            }
        }
    }

    /// Closes the queue: pushes fail from now on, and consumers get
    /// [`PopError::Closed`] once they have drained what is left.
    ///
    /// Takes the queue's internal lock, so that no push lands after it
    /// returns: it waits while another process holds that lock (only for
    /// the few instructions of a push or pop, unless that process is
    /// stopped; a holder that dies releases it). To bound the wait, use
    /// [`close_timeout`](Self::close_timeout).
    pub fn close(&self) {
        let _ = self.close_with(Wait::Forever);
    }

    /// Like [`close`](Self::close), waiting at most `limit` for the
    /// internal lock; on [`Timeout`] the queue is left open.
    pub fn close_timeout(&self, limit: Duration) -> Result<(), Timeout> {
        self.close_with(Wait::within(limit))
    }

    fn close_with(&self, wait: Wait) -> Result<(), Timeout> {
        let locked = match self.enter(wait) {
            Ok(()) => true,
            Err(Stuck::Busy) => return Err(Timeout),
            // The flag is one word: a queue whose lock is broken still closes.
            Err(Stuck::Broken) => false,
        };
        self.word(CLOSED).store(1, Ordering::Release);
        if locked {
            self.lock.unlock();
        }
        for seq in [NOT_EMPTY, NOT_FULL] {
            self.word(seq).fetch_add(1, Ordering::SeqCst);
            futex_wake_all(self.word(seq));
        }
        Ok(())
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.word(CLOSED).load(Ordering::Acquire) != 0
    }

    /// Records in the queue now.
    pub fn len(&self) -> usize {
        let (head, tail) = (self.index(HEAD).load(Ordering::Acquire), self.index(TAIL).load(Ordering::Acquire));
        tail.wrapping_sub(head).min(self.capacity) as usize
    }

    /// True if no record is in the queue now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most records the queue holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn slot_at(&self, index: u64) -> *mut u8 {
        let at = RING + (index % self.capacity) as usize * size_of::<T>();
        self.seg.bytes(at, size_of::<T>())
    }

    fn slot_write(&self, index: u64, item: &T) {
        let bytes = bytemuck::bytes_of(item);
        // SAFETY: slot_at bounds-checked the record's bytes in the ring; the
        // queue lock, held by the caller, gives this process sole access.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.slot_at(index), bytes.len()) };
    }

    fn slot_read(&self, index: u64) -> T {
        // SAFETY: as in slot_write; T is Pod, so any bytes form a valid T, and
        // read_unaligned does not rely on the slot's alignment.
        unsafe { std::ptr::read_unaligned(self.slot_at(index).cast::<T>()) }
    }

    /// Bumps a sequence word, waking sleepers only if there are any.
    fn signal(&self, seq: usize, waiters: usize) {
        self.word(seq).fetch_add(1, Ordering::SeqCst);
        if self.word(waiters).load(Ordering::SeqCst) > 0 {
            futex_wake_all(self.word(seq));
        }
    }

    /// Sleeps until `seq` moves past `seen` (or `limit` passes).
    fn sleep(&self, seq: usize, waiters: usize, seen: u32, limit: Option<Duration>) {
        self.word(waiters).fetch_add(1, Ordering::SeqCst);
        futex_wait(self.word(seq), seen, limit);
        self.word(waiters).fetch_sub(1, Ordering::SeqCst);
    }
}

queue_lifetime! { impl<T: Pod + Send> ShmQueue<T> }
