//! `ShmQueue<T>`: a bounded multi-producer multi-consumer queue of records
//! in a named segment, with [`Sender`] and [`Receiver`] handles whose
//! liveness every process sees, and [`shutdown`](ShmQueue::shutdown) for
//! end-of-stream.
//!
//! A robust mutex guards the ring; senders and receivers that must wait
//! sleep on futex sequence words outside the lock (a slice at a time: a
//! waker killed between its change and its wake-up delays them by a slice,
//! never for good). Each critical section copies the record first and
//! moves the index last, with one store, so the ring is consistent at
//! every instant: a process killed inside one leaves either the whole
//! operation or none of it, and the next locker carries on (the lock
//! reports the death; the queue repairs nothing). What a killed process
//! can lose: a receiver killed inside `recv` after it moved the head and
//! before `recv` returned loses that one record; a sender killed inside
//! `send` either sent or did not.
//!
//! **Ends.** Senders and receivers each hold a slot (see
//! `segment::slots`), which their process's death frees. As with a pipe,
//! once every receiver is gone a send fails with `Disconnected` instead
//! of queueing records no one will take (within a millisecond of the last
//! receiver's death: a sender looks at most that often while there is
//! room), and once every sender is gone and the queue is drained a receive
//! does. Until the first receiver (or sender) arrives, nothing is
//! disconnected: either side may start first.

mod error;
mod roles;

pub use error::{RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};
pub use roles::{Receiver, Sender};

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::raw::{futex_wait, futex_wake_all, left, Acquired, Failed, RawMutex, Wait};
use super::Timeout;
use crate::kind::SegmentKind;
use crate::segment::slots::SlotTable;
use crate::segment::{liveness, Segment};
use crate::{Error, Record, Result};

const CAPACITY: usize = 64;
const ITEM_SIZE: usize = 72;
const HEAD: usize = 80;
const TAIL: usize = 88;
const SHUTDOWN: usize = 96;
const EVER_SENDER: usize = 100;
const EVER_RECEIVER: usize = 104;
const NOT_EMPTY: usize = 128;
const RECV_WAITERS: usize = 132;
const NOT_FULL: usize = 192;
const SEND_WAITERS: usize = 196;
/// Senders' and receivers' slot bytes.
const SENDERS: usize = 256;
const RECEIVERS: usize = 512;
/// Most senders, and most receivers, at once.
pub(crate) const ROLES: usize = 256;
const RING: usize = 768;

/// How long `try_` forms wait for the internal lock: far past any critical
/// section, short enough not to block a caller that asked not to wait.
const TRY_LOCK_WAIT: Duration = Duration::from_millis(1);

/// A bounded queue of `T` records shared by processes: the handle on its
/// segment (its lifetime, its length, its end), from which [`Sender`]s and
/// [`Receiver`]s are made.
///
/// ```
/// use shmkit::sync::{RecvError, ShmQueue};
/// # let name = format!("shmkit-doc-queue-{}", std::process::id());
/// let q = ShmQueue::<u64>::create(&name, 1024)?;
/// let tx = q.sender()?;
/// tx.send(7).unwrap();
/// q.shutdown(); // end of stream: receivers drain what is left
/// let rx = ShmQueue::<u64>::open(&name)?.receiver()?; // e.g. in another process
/// assert_eq!(rx.recv(), Ok(7));
/// assert_eq!(rx.recv(), Err(RecvError::Shutdown));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ShmQueue<T: Record> {
    core: Arc<Core<T>>,
}

/// What the queue's handles share in one process.
pub(crate) struct Core<T> {
    seg: Segment,
    lock: RawMutex,
    capacity: u64,
    senders: SlotTable,
    receivers: SlotTable,
    _item: PhantomData<fn(T) -> T>,
}

/// Why a step of a send or receive did not complete.
enum Stop {
    Full,
    Empty,
    Busy,
    Timeout,
    Shutdown,
    Disconnected,
    Broken,
    Inherited,
}

/// How long a call waits: a blocking call as long as it takes, a
/// `_timeout` call until its deadline, a `try_` call not at all.
#[derive(Clone, Copy)]
enum Mode {
    Block(Option<Instant>),
    Try,
}

impl Mode {
    fn lock_wait(self) -> Wait {
        match self {
            Mode::Block(None) => Wait::Forever,
            Mode::Block(Some(d)) => Wait::Until(d),
            Mode::Try => Wait::within(TRY_LOCK_WAIT),
        }
    }
}

impl<T: Record> ShmQueue<T> {
    const ALIGNED: () =
        assert!(align_of::<T>() <= 64 && size_of::<T>() > 0, "queue records: 1 byte or more, aligned to at most 64");

    fn len_for(capacity: u64) -> Option<usize> {
        usize::try_from(capacity).ok()?.checked_mul(size_of::<T>())?.checked_add(RING)
    }

    fn types() -> Result<[(&'static str, String); 1]> {
        Ok([("record", crate::npy::record::dtype_of::<T>()?)])
    }

    /// Creates queue segment `name` with room for `capacity` records.
    pub fn create(name: &str, capacity: u64) -> Result<Self> {
        let () = Self::ALIGNED;
        let len = Self::len_for(capacity).filter(|_| capacity > 0);
        let len = len.ok_or_else(|| Error::InvalidArgument(format!("a queue of {capacity} records of this size")))?;
        let locked = super::create_locked(name, SegmentKind::Queue, &Self::types()?, len, |seg| {
            seg.atomic_u64(CAPACITY).store(capacity, Ordering::Relaxed);
            seg.atomic_u64(ITEM_SIZE).store(size_of::<T>() as u64, Ordering::Relaxed);
        })?;
        Ok(Self::wrap(locked, capacity))
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(capacity: u64) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, capacity))
    }

    /// Opens queue segment `name`, which must hold `T` records (by their
    /// numpy dtype: [`Error::WrongType`] otherwise).
    pub fn open(name: &str) -> Result<Self> {
        let () = Self::ALIGNED;
        let seg = super::open(name, SegmentKind::Queue, &Self::types()?, |len| len >= RING)?;
        let capacity = seg.atomic_u64(CAPACITY).load(Ordering::Relaxed);
        let item = seg.atomic_u64(ITEM_SIZE).load(Ordering::Relaxed);
        if item != size_of::<T>() as u64 || Self::len_for(capacity) != Some(seg.data_len()) || capacity == 0 {
            let found = format!("records of {item} bytes, capacity {capacity}, in {} bytes", seg.data_len());
            return Err(Error::bad_header(name, format!("a queue of {found} does not add up")));
        }
        Ok(Self::wrap(super::attach_lock(seg), capacity))
    }

    fn wrap((seg, lock): (Segment, RawMutex), capacity: u64) -> Self {
        let senders = SlotTable::new(SENDERS, ROLES, liveness::SLOTS);
        let receivers = SlotTable::new(RECEIVERS, ROLES, liveness::SLOTS + ROLES as u64);
        ShmQueue { core: Arc::new(Core { seg, lock, capacity, senders, receivers, _item: PhantomData }) }
    }

    /// A sender: sends records, and while it (or another sender) lives,
    /// receivers of an empty queue wait instead of seeing the end.
    /// [`Error::TooManyHandles`] if 256 senders are open already.
    pub fn sender(&self) -> Result<Sender<T>> {
        Sender::new(self.core.clone())
    }

    /// A receiver: takes records, and while it (or another receiver)
    /// lives, senders may send. [`Error::TooManyHandles`] if 256 receivers are open
    /// already.
    pub fn receiver(&self) -> Result<Receiver<T>> {
        Receiver::new(self.core.clone())
    }

    /// Ends the stream: sends fail from now on, and receivers get
    /// [`RecvError::Shutdown`] once they have drained what is left.
    ///
    /// Takes the queue's internal lock, so that no record lands after it
    /// returns: it waits while another process holds that lock (only for
    /// the few instructions of a send or receive, unless that process is
    /// stopped; a holder that dies releases it). To bound the wait, use
    /// [`shutdown_timeout`](Self::shutdown_timeout).
    pub fn shutdown(&self) {
        let _ = self.core.shutdown_with(Wait::Forever);
    }

    /// Like [`shutdown`](Self::shutdown), waiting at most `limit` for the
    /// internal lock; on [`Timeout`] the queue is left open.
    pub fn shutdown_timeout(&self, limit: Duration) -> Result<(), Timeout> {
        self.core.shutdown_with(Wait::within(limit))
    }

    /// True once shut down.
    pub fn is_shutdown(&self) -> bool {
        self.core.is_shutdown()
    }

    /// Records in the queue now.
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// True if no record is in the queue now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most records the queue holds.
    pub fn capacity(&self) -> u64 {
        self.core.capacity
    }
}

crate::segment::lifetime_api!(|s| &s.core.seg; impl[T: Record] ShmQueue<T>);

impl<T: Record> Core<T> {
    fn word(&self, at: usize) -> &AtomicU32 {
        self.seg.atomic_u32(at)
    }

    fn index(&self, at: usize) -> &AtomicU64 {
        self.seg.atomic_u64(at)
    }

    /// Takes the internal lock, waiting as `wait` says. Its critical
    /// sections leave the ring consistent at every store, so a holder's
    /// death needs no repair.
    fn enter(&self, wait: Wait) -> Result<(), Stop> {
        loop {
            return match self.lock.lock_with(wait) {
                Ok(Acquired::Clean) => Ok(()),
                Ok(Acquired::OwnerDied) => {
                    self.lock.mark_consistent();
                    Ok(())
                }
                Err(Failed::Timeout | Failed::WouldBlock) => Err(Stop::Busy),
                // The queue never holds its lock across calls, so "this
                // thread holds it" means a thread of another PID namespace
                // holds it under the same thread id: wait for it as for any
                // holder, a moment at a time.
                Err(Failed::Deadlock) => match wait {
                    Wait::Until(d) if Instant::now() >= d => Err(Stop::Busy),
                    Wait::No => Err(Stop::Busy),
                    _ => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                },
                // Only a lock another process overwrote gets here: going on
                // without it would race.
                Err(_) => Err(Stop::Broken),
            };
        }
    }

    /// Sends `item` as `mode` allows; `alive` says whether any receiver
    /// lives (`fresh`: look now, not at a recent look).
    fn send(&self, item: &T, mode: Mode, alive: impl Fn(bool) -> bool) -> Result<(), Stop> {
        self.seg.check_process().map_err(|_| Stop::Inherited)?;
        loop {
            if self.is_shutdown() {
                return Err(Stop::Shutdown); // the stream's end says more than a missing receiver
            }
            if !alive(false) {
                return Err(Stop::Disconnected);
            }
            let seen = self.word(NOT_FULL).load(Ordering::SeqCst);
            self.enter(mode.lock_wait()).map_err(|s| busy_as_timeout(s, mode))?;
            if self.is_shutdown() {
                self.lock.unlock();
                return Err(Stop::Shutdown);
            }
            let (head, tail) = (self.index(HEAD).load(Ordering::Acquire), self.index(TAIL).load(Ordering::Acquire));
            if tail.wrapping_sub(head) < self.capacity {
                crate::fault::pause("queue-send-locked"); // a test's long stay in the lock
                self.slot_write(tail, item);
                self.index(TAIL).store(tail.wrapping_add(1), Ordering::Release);
                self.lock.unlock();
                crate::fault::point("queue-send-before-wake");
                self.signal(NOT_EMPTY, RECV_WAITERS);
                return Ok(());
            }
            self.lock.unlock();
            if !alive(true) {
                return Err(Stop::Disconnected);
            }
            match (mode, left(deadline(mode))) {
                (Mode::Try, _) => return Err(Stop::Full),
                (_, Some(Duration::ZERO)) => return Err(Stop::Timeout),
                (_, limit) => self.sleep(NOT_FULL, SEND_WAITERS, seen, limit),
            }
        }
    }

    /// Receives a record as `mode` allows; `alive` says whether any sender lives.
    fn recv(&self, mode: Mode, alive: impl Fn() -> bool) -> Result<T, Stop> {
        self.seg.check_process().map_err(|_| Stop::Inherited)?;
        loop {
            // Looked at before the lock: a sender that was gone by then sent
            // its last record before it left, so an empty ring under the
            // lock below really is the end. (Looked at after, a sender could
            // send and leave in between, its record still queued.)
            // `seen` first: a last sender that leaves after it bumps the
            // word, so the sleep below cannot miss its leaving.
            let seen = self.word(NOT_EMPTY).load(Ordering::SeqCst);
            let senders = alive();
            self.enter(mode.lock_wait()).map_err(|s| busy_as_timeout(s, mode))?;
            let (head, tail) = (self.index(HEAD).load(Ordering::Acquire), self.index(TAIL).load(Ordering::Acquire));
            if head != tail {
                let item = self.slot_read(head);
                self.index(HEAD).store(head.wrapping_add(1), Ordering::Release);
                self.lock.unlock();
                self.signal(NOT_FULL, SEND_WAITERS);
                return Ok(item);
            }
            let shutdown = self.is_shutdown();
            self.lock.unlock();
            crate::fault::pause("queue-recv-found-empty");
            if shutdown {
                return Err(Stop::Shutdown);
            }
            if !senders {
                return Err(Stop::Disconnected);
            }
            match (mode, left(deadline(mode))) {
                (Mode::Try, _) => return Err(Stop::Empty),
                (_, Some(Duration::ZERO)) => return Err(Stop::Timeout),
                (_, limit) => self.sleep(NOT_EMPTY, RECV_WAITERS, seen, limit),
            }
        }
    }

    fn shutdown_with(&self, wait: Wait) -> Result<(), Timeout> {
        let locked = match self.enter(wait) {
            Ok(()) => true,
            Err(Stop::Busy) => return Err(Timeout),
            // The flag is one word: a queue whose lock is broken still shuts down.
            Err(_) => false,
        };
        self.word(SHUTDOWN).store(1, Ordering::Release);
        if locked {
            self.lock.unlock();
        }
        self.wake_everyone();
        Ok(())
    }

    /// Wakes every sleeper, senders and receivers: the queue's ends moved.
    fn wake_everyone(&self) {
        for seq in [NOT_EMPTY, NOT_FULL] {
            self.word(seq).fetch_add(1, Ordering::SeqCst);
            futex_wake_all(self.word(seq));
        }
    }

    fn is_shutdown(&self) -> bool {
        self.word(SHUTDOWN).load(Ordering::Acquire) != 0
    }

    fn len(&self) -> usize {
        let (head, tail) = (self.index(HEAD).load(Ordering::Acquire), self.index(TAIL).load(Ordering::Acquire));
        tail.wrapping_sub(head).min(self.capacity) as usize
    }

    /// True unless a side that once had a member has none left alive.
    fn side_alive(&self, table: &SlotTable, ever: usize) -> bool {
        self.word(ever).load(Ordering::Acquire) == 0 || table.any_held(&self.seg)
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

    /// Sleeps until `seq` moves past `seen`, `limit` passes, or a slice
    /// ends (the caller looks again).
    fn sleep(&self, seq: usize, waiters: usize, seen: u32, limit: Option<Duration>) {
        self.word(waiters).fetch_add(1, Ordering::SeqCst);
        futex_wait(self.word(seq), seen, limit);
        self.word(waiters).fetch_sub(1, Ordering::SeqCst);
    }
}

fn deadline(mode: Mode) -> Option<Instant> {
    match mode {
        Mode::Block(d) => d,
        Mode::Try => None,
    }
}

/// A `_timeout` call that could not get the lock by its deadline timed out;
/// a `try_` call that could not get it in a millisecond is busy.
fn busy_as_timeout(stop: Stop, mode: Mode) -> Stop {
    match (stop, mode) {
        (Stop::Busy, Mode::Block(_)) => Stop::Timeout,
        (s, _) => s,
    }
}
