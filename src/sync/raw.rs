//! Process-shared robust mutexes and futex waits: the one place shmkit
//! places locks in shared memory.
//!
//! Why not the `raw_sync` crate: its mutexes are not robust
//! (a holder that dies deadlocks everyone), its timed waits fail at once
//! with `EINVAL` for many sub-second timeouts, and it reads uninitialised
//! memory. glibc's process-shared robust mutexes do what is needed: the
//! kernel walks a dying thread's robust list and marks each mutex it held,
//! and the next locker gets `EOWNERDEAD` (see `pthread_mutexattr_setrobust(3)`).
//! Waiting without a lock (events, barriers, queue sides) uses `futex(2)`
//! through `rustix`, whose `FUTEX_WAIT` takes a relative timeout and so has
//! no trouble with sub-second ones.

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// Bytes a mutex takes; callers reserve 64 for it.
pub(crate) const MUTEX_SIZE: usize = size_of::<libc::pthread_mutex_t>();
const _: () = assert!(MUTEX_SIZE <= 64 && align_of::<libc::pthread_mutex_t>() <= 64);

/// A robust, process-shared, error-checking pthread mutex in a mapping.
pub(crate) struct RawMutex {
    ptr: *mut libc::pthread_mutex_t,
}

// SAFETY: the mutex lives in shared memory and is made to be used from any
// thread of any process; the pointer is only handed to pthread calls.
unsafe impl Send for RawMutex {}
// SAFETY: as above: pthread mutexes are safe to call from several threads.
unsafe impl Sync for RawMutex {}

/// How long a lock call may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// As long as it takes.
    Forever,
    /// Not at all (`try_` forms).
    No,
    /// Until this instant (`_timeout` forms).
    Until(Instant),
}

impl Wait {
    /// A wait of `limit` from now; `Forever` past what `Instant` can hold
    /// (`Duration::MAX`).
    pub(crate) fn within(limit: Duration) -> Wait {
        super::deadline(limit).map_or(Wait::Forever, Wait::Until)
    }
}

/// How a lock was taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Normally.
    Clean,
    /// The previous holder died holding it; the data may be half-updated.
    OwnerDied,
}

/// Why a lock was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    WouldBlock,
    Timeout,
    /// A holder died and its successor released it without marking it
    /// consistent: POSIX leaves such a mutex unusable for good.
    Unrecoverable,
    /// This thread already holds it.
    Deadlock,
}

fn check(code: i32) -> io::Result<()> {
    match code {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

impl RawMutex {
    /// Initialises a mutex at `ptr`.
    ///
    /// # Safety
    /// - `ptr` is valid for writes of [`MUTEX_SIZE`] bytes, aligned for
    ///   `pthread_mutex_t`, and stays mapped while the result is used;
    /// - no process uses that memory as a mutex yet (its segment is not
    ///   published).
    pub unsafe fn init(ptr: *mut u8) -> io::Result<RawMutex> {
        debug_assert!(ptr as usize % align_of::<libc::pthread_mutex_t>() == 0, "misaligned mutex");
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        let a = attr.as_mut_ptr();
        // SAFETY: `a` points to a local that pthread_mutexattr_init initialises
        // before the setters read it; `ptr` is valid and unshared (caller's contract).
        unsafe {
            check(libc::pthread_mutexattr_init(a))?;
            let set = check(libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED))
                .and_then(|_| check(libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST)))
                .and_then(|_| check(libc::pthread_mutexattr_settype(a, libc::PTHREAD_MUTEX_ERRORCHECK)))
                .and_then(|_| check(libc::pthread_mutex_init(ptr.cast(), a)));
            libc::pthread_mutexattr_destroy(a);
            set?;
        }
        Ok(RawMutex { ptr: ptr.cast() })
    }

    /// A handle on a mutex that [`init`](Self::init) set up, in this or
    /// another process.
    ///
    /// # Safety
    /// `ptr` points at such a mutex, aligned, in a mapping that stays
    /// mapped while the result is used.
    pub unsafe fn attach(ptr: *mut u8) -> RawMutex {
        debug_assert!(ptr as usize % align_of::<libc::pthread_mutex_t>() == 0, "misaligned mutex");
        RawMutex { ptr: ptr.cast() }
    }

    /// Locks, waiting until `deadline` (forever if `None`):
    /// `pthread_mutex_lock(3)` / `pthread_mutex_clocklock(3)`.
    pub fn lock(&self, deadline: Option<Instant>) -> Result<Acquired, Failed> {
        let code = match deadline {
            // SAFETY: self.ptr points at an initialised mutex in a live mapping
            // (the constructors' contract).
            None => unsafe { libc::pthread_mutex_lock(self.ptr) },
            // A free mutex is taken without reading the clock (twice, in
            // `timed_lock`): the common case of a short critical section.
            // SAFETY: as above.
            Some(d) => match unsafe { libc::pthread_mutex_trylock(self.ptr) } {
                // SAFETY: as above.
                libc::EBUSY => unsafe { timed_lock(self.ptr, d) },
                code => code,
            },
        };
        outcome(code)
    }

    /// Locks, waiting as `wait` says.
    pub fn lock_with(&self, wait: Wait) -> Result<Acquired, Failed> {
        match wait {
            Wait::Forever => self.lock(None),
            Wait::No => self.try_lock(),
            Wait::Until(d) => self.lock(Some(d)),
        }
    }

    /// Locks if free: `pthread_mutex_trylock(3)`.
    pub fn try_lock(&self) -> Result<Acquired, Failed> {
        // SAFETY: self.ptr points at an initialised mutex in a live mapping.
        outcome(unsafe { libc::pthread_mutex_trylock(self.ptr) })
    }

    /// After [`Acquired::OwnerDied`]: declares the data repaired, so the
    /// mutex stays usable (`pthread_mutex_consistent(3)`).
    pub fn mark_consistent(&self) {
        // SAFETY: self.ptr points at an initialised mutex this thread holds.
        let _ = unsafe { libc::pthread_mutex_consistent(self.ptr) };
    }

    /// Unlocks (`pthread_mutex_unlock(3)`); only the holding thread calls it.
    pub fn unlock(&self) {
        // SAFETY: self.ptr points at an initialised mutex; callers hold it.
        let _ = unsafe { libc::pthread_mutex_unlock(self.ptr) };
    }

    /// Unlocks if this thread holds it; `Err` (`EPERM`) otherwise: robust
    /// mutexes check their owner on unlock.
    pub fn try_unlock(&self) -> Result<(), i32> {
        // SAFETY: self.ptr points at an initialised mutex in a live mapping;
        // an unlock by a thread that does not hold it fails and changes nothing.
        match unsafe { libc::pthread_mutex_unlock(self.ptr) } {
            0 => Ok(()),
            e => Err(e),
        }
    }

    /// True if this thread holds it (a robust error-checking mutex's
    /// `trylock` by its holder fails with `EDEADLK`).
    pub fn held_here(&self) -> bool {
        match self.try_lock() {
            Err(Failed::Deadlock) => true,
            Ok(Acquired::Clean) => {
                self.unlock();
                false
            }
            Ok(Acquired::OwnerDied) => {
                // Taken from a dead holder just now: leave it usable (the
                // caller of a lock knows of the death through its own word).
                self.mark_consistent();
                self.unlock();
                false
            }
            Err(_) => false,
        }
    }
}

fn outcome(code: i32) -> Result<Acquired, Failed> {
    match code {
        0 => Ok(Acquired::Clean),
        libc::EOWNERDEAD => Ok(Acquired::OwnerDied),
        libc::EBUSY => Err(Failed::WouldBlock),
        libc::ETIMEDOUT => Err(Failed::Timeout),
        libc::EDEADLK => Err(Failed::Deadlock),
        // ENOTRECOVERABLE, or EINVAL from a mutex another process corrupted.
        _ => Err(Failed::Unrecoverable),
    }
}

#[cfg(target_env = "gnu")]
extern "C" {
    /// glibc 2.30+: `pthread_mutex_timedlock` against a chosen clock.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> i32;
}

/// Locks `mutex`, giving up at `deadline`. With glibc the deadline is
/// passed on CLOCK_MONOTONIC, the clock `Instant` reads, so setting the
/// wall clock neither shortens nor stretches the wait; elsewhere it falls
/// back to `pthread_mutex_timedlock` on CLOCK_REALTIME.
///
/// # Safety
/// `mutex` points at an initialised mutex in a live mapping.
unsafe fn timed_lock(mutex: *mut libc::pthread_mutex_t, deadline: Instant) -> i32 {
    let after = deadline.saturating_duration_since(Instant::now());
    #[cfg(target_env = "gnu")]
    {
        let abs = clock_after(libc::CLOCK_MONOTONIC, after);
        // SAFETY: `mutex` is valid (caller's contract); `abs` is a valid
        // timespec on the stack, read during the call only.
        unsafe { pthread_mutex_clocklock(mutex, libc::CLOCK_MONOTONIC, &abs) }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let abs = clock_after(libc::CLOCK_REALTIME, after);
        // SAFETY: as above.
        unsafe { libc::pthread_mutex_timedlock(mutex, &abs) }
    }
}

/// `after` from now on `clock`, as an absolute timespec; saturates at the
/// largest time a `time_t` holds (`Duration::MAX` waits forever).
fn clock_after(clock: libc::clockid_t, after: Duration) -> libc::timespec {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec; the clock ids used are
    // ones every Linux has, so the call cannot fail.
    unsafe { libc::clock_gettime(clock, &mut now) };
    let now = Duration::new(now.tv_sec.max(0) as u64, now.tv_nsec as u32);
    let t = now.checked_add(after).unwrap_or(Duration::MAX);
    let secs = libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX);
    libc::timespec { tv_sec: secs, tv_nsec: t.subsec_nanos() as _ }
}

/// Longest a sleeper sleeps before it looks again. A waker changes the
/// state, then wakes (`FUTEX_WAKE`); one killed between the two would
/// leave sleepers asleep for good, so every sleep is capped and every
/// caller re-checks the state it waits for.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// Sleeps while `word` holds `expected`, at most `limit` and at most
/// [`SLICE`] (`FUTEX_WAIT`, shared between processes). Returns early on a
/// wake, a change, or a signal: callers re-check what they wait for.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, limit: Option<Duration>) {
    use rustix::thread::futex;
    let limit = Some(limit.map_or(SLICE, |l| l.min(SLICE)));
    let _ = futex::wait(word, futex::Flags::empty(), expected, crate::os::timespec(limit).as_ref());
}

/// Wakes every process sleeping on `word` (`FUTEX_WAKE`).
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), i32::MAX as u32);
}

/// Time left until `deadline`: `Some(ZERO)` once passed, `None` for no deadline.
pub(crate) fn left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}
