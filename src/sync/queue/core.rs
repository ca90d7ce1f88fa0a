//! The queue's engine: its segment layout, its lock, and sending and
//! receiving records of any size as bytes (see the module note above).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::segment::slots::SlotTable;
use crate::segment::Segment;
use crate::sync::raw::{futex_wait, futex_wake_all, left, Acquired, Failed, RawMutex, Wait};
use crate::sync::Timeout;

pub(super) const CAPACITY: usize = 64;
pub(super) const ITEM_SIZE: usize = 72;
const HEAD: usize = 80;
const TAIL: usize = 88;
const SHUTDOWN: usize = 96;
pub(super) const EVER_SENDER: usize = 100;
pub(super) const EVER_RECEIVER: usize = 104;
const NOT_EMPTY: usize = 128;
const RECV_WAITERS: usize = 132;
const NOT_FULL: usize = 192;
const SEND_WAITERS: usize = 196;
/// Senders' and receivers' slot bytes.
pub(super) const SENDERS: usize = 256;
pub(super) const RECEIVERS: usize = 512;
/// Most senders, and most receivers, at once.
pub(crate) const ROLES: usize = 256;
pub(super) const RING: usize = 768;

/// How long `try_` forms wait for the internal lock: far past any critical
/// section, short enough not to block a caller that asked not to wait.
const TRY_LOCK_WAIT: Duration = Duration::from_millis(1);

/// What the queue's handles share in one process.
pub(crate) struct Core {
    pub(super) seg: Segment,
    pub(super) lock: RawMutex,
    pub(super) capacity: u64,
    /// The records' canonical dtype and size in bytes.
    pub(super) item: (String, usize),
    pub(super) senders: SlotTable,
    pub(super) receivers: SlotTable,
}

/// Why a step of a send or receive did not complete.
pub(super) enum Stop {
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
pub(super) enum Mode {
    Block(Option<Instant>),
    Try,
}

impl Mode {
    pub(super) fn lock_wait(self) -> Wait {
        match self {
            Mode::Block(None) => Wait::Forever,
            Mode::Block(Some(d)) => Wait::Until(d),
            Mode::Try => Wait::within(TRY_LOCK_WAIT),
        }
    }
}

impl Core {
    pub(super) fn word(&self, at: usize) -> &AtomicU32 {
        self.seg.atomic_u32(at)
    }

    pub(super) fn index(&self, at: usize) -> &AtomicU64 {
        self.seg.atomic_u64(at)
    }

    /// Takes the internal lock, waiting as `wait` says. Its critical
    /// sections leave the ring consistent at every store, so a holder's
    /// death needs no repair.
    pub(super) fn enter(&self, wait: Wait) -> Result<(), Stop> {
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
    pub(super) fn send(&self, item: &[u8], mode: Mode, alive: impl Fn(bool) -> bool) -> Result<(), Stop> {
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
    pub(super) fn recv(&self, out: &mut [u8], mode: Mode, alive: impl Fn() -> bool) -> Result<(), Stop> {
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
                self.slot_read(head, out);
                self.index(HEAD).store(head.wrapping_add(1), Ordering::Release);
                self.lock.unlock();
                self.signal(NOT_FULL, SEND_WAITERS);
                return Ok(());
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

    pub(super) fn shutdown_with(&self, wait: Wait) -> Result<(), Timeout> {
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
    pub(super) fn wake_everyone(&self) {
        for seq in [NOT_EMPTY, NOT_FULL] {
            self.word(seq).fetch_add(1, Ordering::SeqCst);
            futex_wake_all(self.word(seq));
        }
    }

    pub(super) fn is_shutdown(&self) -> bool {
        self.word(SHUTDOWN).load(Ordering::Acquire) != 0
    }

    pub(super) fn len(&self) -> usize {
        let (head, tail) = (self.index(HEAD).load(Ordering::Acquire), self.index(TAIL).load(Ordering::Acquire));
        tail.wrapping_sub(head).min(self.capacity) as usize
    }

    /// True unless a side that once had a member has none left alive.
    pub(super) fn side_alive(&self, table: &SlotTable, ever: usize) -> bool {
        self.word(ever).load(Ordering::Acquire) == 0 || table.any_held(&self.seg)
    }

    fn slot_at(&self, index: u64) -> *mut u8 {
        let at = RING + (index % self.capacity) as usize * self.item.1;
        self.seg.bytes(at, self.item.1)
    }

    /// Copies one record's bytes into slot `index` (lock held; `item` is
    /// one record's size, as the roles check).
    fn slot_write(&self, index: u64, item: &[u8]) {
        debug_assert_eq!(item.len(), self.item.1);
        // SAFETY: slot_at bounds-checked one record's bytes in the ring, and
        // `item` is that long; the queue lock, held by the caller, gives this
        // process sole access.
        unsafe { std::ptr::copy_nonoverlapping(item.as_ptr(), self.slot_at(index), self.item.1) };
    }

    /// Copies slot `index`'s record into `out` (lock held; one record's size).
    fn slot_read(&self, index: u64, out: &mut [u8]) {
        debug_assert_eq!(out.len(), self.item.1);
        // SAFETY: as in slot_write; raw pointers, no reference into memory
        // other processes share.
        unsafe { std::ptr::copy_nonoverlapping(self.slot_at(index), out.as_mut_ptr(), self.item.1) };
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
