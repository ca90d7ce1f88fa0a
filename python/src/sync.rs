//! Locks, an event, a barrier and a counter across processes, shaped as
//! Python's `threading` ones. Blocking calls wait with the GIL released
//! and answer Ctrl-C (see `blocking`).

use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use shmkit::sync::{
    AcquireError, EventMode, LockTimeoutError, OwnerDied, ReadGuard, ShmBarrier, ShmCounter, ShmEvent, ShmLock,
    ShmRwLock, WriteGuard,
};

use crate::handle::{handle_methods, Handle};
use crate::{blocking, errors, owned};

/// What the `op` argument of a native base asks for: `create(name)`,
/// `create_unique()` or `open(name)`.
fn made<T>(
    op: &str,
    name: Option<&str>,
    create: impl FnOnce(&str) -> shmkit::Result<T>,
    unique: impl FnOnce() -> shmkit::Result<T>,
    open: impl FnOnce(&str) -> shmkit::Result<T>,
) -> PyResult<shmkit::Result<T>> {
    Ok(match (op, name) {
        ("create", Some(n)) => create(n),
        ("create_unique", _) => unique(),
        ("open", Some(n)) => open(n),
        _ => return Err(PyValueError::new_err("use .create(name, ...), .create_unique(...) or .open(name)")),
    })
}

/// `shmkit.<what>('name')`, or `shmkit.<what>('name', closed)`.
fn repr<T: owned::Owned + 'static>(handle: &Handle<T>, what: &str) -> String {
    let state = if handle.is_closed() { ", closed" } else { "" };
    format!("shmkit.{what}({:?}{state})", handle.name())
}

/// A robust lock across processes, as `threading.Lock`: `acquire`,
/// `release`, `with lock:`. The thread that acquires it releases it. A
/// holder's death raises `shmkit.OwnerDied` (see `acquire`).
#[pyclass(subclass, frozen, weakref, module = "shmkit._shmkit", name = "_Lock")]
pub(crate) struct Lock {
    lock: Handle<ShmLock>,
}

handle_methods!(Lock, lock, {
    fn __repr__(&self) -> String {
        repr(&self.lock, "Lock")
    }

    #[new]
    #[pyo3(signature = (op, name=None))]
    fn new(op: &str, name: Option<&str>) -> PyResult<Self> {
        let lock = Handle::new(made(op, name, ShmLock::create, ShmLock::create_unique, ShmLock::open)?, "Lock")?;
        Ok(Lock { lock })
    }

    /// Takes the lock: waits as long as it takes (`timeout=-1`), at most
    /// `timeout` seconds, or not at all (`blocking=False`); True if taken.
    /// If a holder died holding it (and no one acknowledged that since),
    /// raises `shmkit.OwnerDied` **with the lock held by this thread**:
    /// repair what it protects, call `acknowledge()`, then `release()`.
    #[pyo3(signature = (blocking=true, timeout=-1.0))]
    fn acquire(slf: &Bound<'_, Self>, blocking: bool, timeout: f64) -> PyResult<bool> {
        let py = slf.py();
        let lock = slf.get().lock.get()?;
        let limit = match (blocking, timeout) {
            (false, t) if t != -1.0 => {
                return Err(PyValueError::new_err("can't specify a timeout for a non-blocking call"))
            }
            (false, _) => Some(Duration::ZERO),
            (true, -1.0) => None,
            (true, t) => blocking::limit(Some(t))?,
        };
        let got = blocking::wait(py, limit, |slice| match lock.acquire(Some(slice)) {
            Err(AcquireError::Timeout) => None,
            other => Some(other),
        })?;
        match got {
            None => Ok(false),
            Some(Ok(())) => Ok(true),
            Some(Err(AcquireError::OwnerDied)) => Err(owner_died(
                slf.as_any(),
                "a holder of this Lock died holding it: this thread holds it now; repair what it protects, then \
                 acknowledge() and release()",
            )?),
            Some(Err(e)) => Err(errors::acquire(e)),
        }
    }

    /// Releases the lock, held by this thread (`shmkit.NotHeld` otherwise).
    fn release(&self) -> PyResult<()> {
        self.lock.get()?.release().map_err(errors::not_held)
    }

    /// After `OwnerDied`, with the lock held: declares the damage repaired,
    /// so later takers are no longer told.
    fn acknowledge(&self) -> PyResult<()> {
        self.lock.get()?.acknowledge().map_err(errors::not_held)
    }

    /// True if some thread of some process holds it now.
    fn locked(&self) -> PyResult<bool> {
        Ok(self.lock.get()?.is_locked())
    }

    /// `with lock:`. If a holder died, the lock is released again (the
    /// death still reported to the next taker) and `shmkit.OwnerDied` is
    /// raised: the block does not run and nothing is left held. Repair
    /// through `acquire()`, `acknowledge()`, `release()`.
    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<bool> {
        match Self::acquire(slf, true, -1.0) {
            Err(e) if e.is_instance(slf.py(), errors::class(slf.py(), "OwnerDied")?.as_any()) => {
                slf.get().release()?;
                Err(e)
            }
            other => other,
        }
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }
});

/// `shmkit.OwnerDied` for `lock`, its `lock` attribute set.
fn owner_died(lock: &Bound<'_, PyAny>, message: &str) -> PyResult<PyErr> {
    let py = lock.py();
    let exc = errors::class(py, "OwnerDied")?.call1((message,))?;
    exc.setattr("lock", lock)?;
    Ok(PyErr::from_value(exc))
}

/// A reader-writer lock across processes: `with rw.read():` (many
/// readers) and `with rw.write():` (one writer).
#[pyclass(subclass, frozen, weakref, module = "shmkit._shmkit", name = "_RWLock")]
pub(crate) struct RwLockHandle {
    lock: Handle<ShmRwLock<u8>>,
}

handle_methods!(RwLockHandle, lock, {
    fn __repr__(&self) -> String {
        repr(&self.lock, "RWLock")
    }

    #[new]
    #[pyo3(signature = (op, name=None))]
    fn new(op: &str, name: Option<&str>) -> PyResult<Self> {
        let create = |n: &str| ShmRwLock::create(n, 0u8);
        let lock = Handle::new(made(op, name, create, || ShmRwLock::create_unique(0u8), ShmRwLock::open)?, "RWLock")?;
        Ok(RwLockHandle { lock })
    }

    /// Shared access, as a context manager; `timeout` in seconds (`None`:
    /// as long as it takes; `shmkit.Timeout` past it).
    #[pyo3(signature = (timeout=None))]
    fn read(&self, timeout: Option<f64>) -> PyResult<RwGuard> {
        Ok(RwGuard::new(self.lock.get()?, false, blocking::limit(timeout)?))
    }

    /// Exclusive access, as a context manager (see `read`).
    #[pyo3(signature = (timeout=None))]
    fn write(&self, timeout: Option<f64>) -> PyResult<RwGuard> {
        Ok(RwGuard::new(self.lock.get()?, true, blocking::limit(timeout)?))
    }
});

/// A read or write access of an `RWLock` (`rw.read()`, `rw.write()`):
/// `with access:`, or `acquire()` and `release()`. It belongs to the
/// thread that made it (a reader-writer lock's access does); a call from
/// another thread raises `shmkit.NotHeld`.
#[pyclass(module = "shmkit", name = "RWLockAccess")]
pub(crate) struct RwGuard {
    // Declared first: dropped before the lock it borrows from.
    held: Option<Held>,
    lock: Arc<ShmRwLock<u8>>,
    write: bool,
    limit: Option<Duration>,
    /// The thread that made it: the only one that touches `held`.
    thread: ThreadId,
}

// SAFETY: the guards in `held` are bound to their thread (a read guard
// shares a non-atomic count with its thread's record of reads). Every
// method that touches `held` first checks that it runs on `thread`
// (`mine`), and `Drop` on any other thread leaks them untouched; the
// other fields are `Send + Sync`.
unsafe impl Send for RwGuard {}
// SAFETY: as above: `held` is only reached on `thread`.
unsafe impl Sync for RwGuard {}

impl RwGuard {
    fn new(lock: Arc<ShmRwLock<u8>>, write: bool, limit: Option<Duration>) -> RwGuard {
        RwGuard { held: None, lock, write, limit, thread: std::thread::current().id() }
    }

    /// `shmkit.NotHeld` unless called on the thread that made it.
    fn mine(&self) -> PyResult<()> {
        match std::thread::current().id() == self.thread {
            true => Ok(()),
            false => Err(errors::raise(
                "NotHeld",
                "this RWLock access belongs to the thread that made it: make one per thread (rw.read(), rw.write())",
            )),
        }
    }
}

/// A call on an access that another call on it is still waiting in.
fn in_use() -> PyErr {
    errors::raise("NotHeld", "this RWLock access is in use by a call that is waiting for it")
}

impl Drop for RwGuard {
    fn drop(&mut self) {
        if std::thread::current().id() != self.thread && self.held.is_some() {
            // Another thread may not give it back (see the `Send` impl):
            // leaked, it stays held until this process exits.
            std::mem::forget(self.held.take());
            Python::attach(|py| {
                let why = "an RWLock access held by one thread was dropped on another: a read access stays held \
                           until this process exits, a write access until its thread exits (then reported as a \
                           dead writer); release accesses on the thread that took them";
                // Deallocation can happen while an exception unwinds: keep it.
                let pending = PyErr::take(py);
                PyRuntimeError::new_err(why).write_unraisable(py, None);
                if let Some(e) = pending {
                    e.restore(py);
                }
            });
        }
    }
}

/// A guard of the `ShmRwLock` in the `Arc` beside it, kept for its
/// `Drop`, which gives the access back.
#[expect(dead_code, reason = "a guard is held only to be dropped")]
enum Held {
    Read(ReadGuard<'static, u8>),
    Write(WriteGuard<'static, u8>),
    /// A write access taken after a writer died, its damage not yet
    /// acknowledged.
    Damaged(OwnerDied<WriteGuard<'static, u8>>),
}

/// How one slice of waiting for an access ended.
enum Taken {
    Held(Held),
    /// A writer died: a write access comes with it (`Held::Damaged`); a
    /// read access was given back (readers cannot repair).
    OwnerDied(Option<Held>),
    /// Not free within the slice.
    Busy,
    /// Refused: the exception class and why.
    Refused(&'static str, String),
}

// SAFETY: a `Taken` is made inside `py.detach` and used after it, and
// `detach` runs its closure on the calling thread: the guards (bound to
// their thread) never change threads, they only pass through a closure's
// return value.
unsafe impl Send for Taken {}

impl Taken {
    fn of<G>(
        got: Result<G, LockTimeoutError<G>>,
        held: fn(G) -> Held,
        damaged: fn(OwnerDied<G>) -> Option<Held>,
    ) -> Taken {
        match got {
            Ok(g) => Taken::Held(held(g)),
            Err(LockTimeoutError::OwnerDied(d)) => Taken::OwnerDied(damaged(d)),
            Err(LockTimeoutError::Timeout) => Taken::Busy,
            Err(e @ LockTimeoutError::Unrecoverable) => Taken::Refused("Broken", e.to_string()),
            Err(e @ LockTimeoutError::Deadlock) => Taken::Refused("Deadlock", e.to_string()),
            Err(e @ LockTimeoutError::Inherited) => Taken::Refused("Inherited", e.to_string()),
        }
    }
}

#[pymethods]
impl RwGuard {
    /// Takes the access, waiting with the GIL released (at most the
    /// `timeout` given to `read`/`write`, then `shmkit.Timeout`; Ctrl-C
    /// ends the wait). If a writer died holding the lock, raises
    /// `shmkit.OwnerDied`: a write access is then **held**: repair what
    /// the lock protects, call `acknowledge()`, then `release()`; a read
    /// access is not (a writer must repair).
    fn acquire(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        // Borrowed already: another call on it is waiting (from a signal
        // handler, or another thread): an error, not PyO3's panic.
        let mut this = slf.try_borrow_mut().map_err(|_| in_use())?;
        this.mine()?;
        if this.held.is_some() {
            return Err(PyValueError::new_err("this access is held already: take it once"));
        }
        // SAFETY: the guards borrow the lock in `this.lock`, an `Arc` this
        // object keeps until after them (fields drop in order, `held`
        // first); the guards are only touched on this thread (`mine`).
        let lock: &'static ShmRwLock<u8> = unsafe { &*Arc::as_ptr(&this.lock) };
        let write = this.write;
        let taken = blocking::wait(py, this.limit, |slice| {
            let taken = match write {
                true => Taken::of(lock.write_timeout(slice), Held::Write, |d| Some(Held::Damaged(d))),
                false => Taken::of(lock.read_timeout(slice), Held::Read, |_| None),
            };
            (!matches!(taken, Taken::Busy)).then_some(taken)
        })?;
        match taken {
            Some(Taken::Held(h)) => {
                this.held = Some(h);
                Ok(())
            }
            Some(Taken::OwnerDied(h)) => {
                this.held = h;
                drop(this);
                let message = match write {
                    true => {
                        "a writer died holding this RWLock: this write access is held now; repair what it \
                             protects, then acknowledge() and release()"
                    }
                    false => {
                        "a writer died holding this RWLock: a write access must repair what it protects and \
                              acknowledge() before readers may enter"
                    }
                };
                Err(owner_died(slf.as_any(), message)?)
            }
            Some(Taken::Refused(class, why)) => Err(errors::raise(class, why)),
            Some(Taken::Busy) | None => Err(errors::raise("Timeout", "the RWLock was not free in time")),
        }
    }

    /// Gives the access back (`shmkit.NotHeld` if it is not held).
    fn release(&mut self) -> PyResult<()> {
        self.mine()?;
        match self.held.take() {
            Some(_) => Ok(()),
            None => Err(errors::raise("NotHeld", "this RWLock access is not held: acquire() it first")),
        }
    }

    /// After `OwnerDied`, with this write access held: declares the damage
    /// repaired, so later takers are no longer told.
    fn acknowledge(&mut self) -> PyResult<()> {
        self.mine()?;
        match self.held.take() {
            Some(Held::Damaged(d)) => {
                self.held = Some(Held::Write(d.acknowledge()));
                Ok(())
            }
            other => {
                self.held = other;
                Err(errors::raise("NotHeld", "acknowledge() follows OwnerDied, with the write access held"))
            }
        }
    }

    /// True while this access is held.
    #[getter]
    fn held(&self) -> PyResult<bool> {
        self.mine()?;
        Ok(self.held.is_some())
    }

    /// `with access:`. If a writer died, nothing is left held and
    /// `shmkit.OwnerDied` is raised: the block does not run. Repair with
    /// `acquire()`, `acknowledge()`, `release()` on a write access.
    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::acquire(slf).or_else(|e| {
            let py = slf.py();
            if e.is_instance(py, errors::class(py, "OwnerDied")?.as_any()) {
                slf.try_borrow_mut().map_err(|_| in_use())?.held = None; // the block does not run: nothing held
            }
            Err(e)
        })
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.mine()?;
        self.held = None;
        Ok(false)
    }
}

/// An event across processes, as `threading.Event`.
#[pyclass(subclass, frozen, weakref, module = "shmkit._shmkit", name = "_Event")]
pub(crate) struct Event {
    event: Handle<ShmEvent>,
}

handle_methods!(closing Event, event, {
    fn __repr__(&self) -> String {
        repr(&self.event, "Event")
    }

    #[new]
    #[pyo3(signature = (op, name=None, auto_reset=false))]
    fn new(op: &str, name: Option<&str>, auto_reset: bool) -> PyResult<Self> {
        let mode = if auto_reset { EventMode::Auto } else { EventMode::Manual };
        let create = |n: &str| ShmEvent::create(n, mode);
        let event = Handle::new(made(op, name, create, || ShmEvent::create_unique(mode), ShmEvent::open)?, "Event")?;
        Ok(Event { event })
    }

    /// Sets it: waiters pass (one per set, for an auto-reset event).
    fn set(&self) -> PyResult<()> {
        self.event.get()?.set();
        Ok(())
    }

    /// Clears it.
    fn clear(&self) -> PyResult<()> {
        self.event.get()?.reset();
        Ok(())
    }

    /// True while set.
    fn is_set(&self) -> PyResult<bool> {
        Ok(self.event.get()?.is_set())
    }

    /// Waits until set, at most `timeout` seconds (`None`: as long as it
    /// takes; a negative one does not wait, as in `threading.Event`); True
    /// if it was set, False on timeout.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let event = self.event.get()?;
        let timeout = timeout.map(|t| if t < 0.0 { 0.0 } else { t }); // NaN stays, and is refused
        Ok(blocking::wait(py, blocking::limit(timeout)?, |slice| event.wait_timeout(slice).ok())?.is_some())
    }
});

/// A barrier across processes: `parties` processes meet before any goes on.
#[pyclass(subclass, frozen, weakref, module = "shmkit._shmkit", name = "_Barrier")]
pub(crate) struct Barrier {
    barrier: Handle<ShmBarrier>,
}

handle_methods!(closing Barrier, barrier, {
    fn __repr__(&self) -> String {
        repr(&self.barrier, "Barrier")
    }

    #[new]
    #[pyo3(signature = (op, name=None, parties=0))]
    fn new(op: &str, name: Option<&str>, parties: u32) -> PyResult<Self> {
        let create = |n: &str| ShmBarrier::create(n, parties);
        let barrier = Handle::new(made(op, name, create, || ShmBarrier::create_unique(parties), ShmBarrier::open)?, "Barrier")?;
        Ok(Barrier { barrier })
    }

    /// How many must arrive.
    #[getter]
    fn parties(&self) -> PyResult<u32> {
        Ok(self.barrier.get()?.parties())
    }

    /// Waits for every party, at most `timeout` seconds (`shmkit.Timeout`
    /// past it, the arrival taken back); True for exactly one of them.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let barrier = self.barrier.get()?;
        match blocking::wait(py, blocking::limit(timeout)?, |slice| barrier.wait_timeout(slice).ok())? {
            Some(r) => Ok(r.is_leader),
            None => Err(errors::raise("Timeout", "not every party arrived at the Barrier in time")),
        }
    }
});

/// An atomic 64-bit counter across processes.
#[pyclass(subclass, frozen, weakref, module = "shmkit._shmkit", name = "_Counter")]
pub(crate) struct Counter {
    counter: Handle<ShmCounter>,
}

handle_methods!(closing Counter, counter, {
    fn __repr__(&self) -> String {
        repr(&self.counter, "Counter")
    }

    #[new]
    #[pyo3(signature = (op, name=None, value=0))]
    fn new(op: &str, name: Option<&str>, value: u64) -> PyResult<Self> {
        let create = |n: &str| ShmCounter::create(n, value);
        let counter = Handle::new(made(op, name, create, || ShmCounter::create_unique(value), ShmCounter::open)?, "Counter")?;
        Ok(Counter { counter })
    }

    /// The value now.
    #[getter]
    fn value(&self) -> PyResult<u64> {
        Ok(self.counter.get()?.get())
    }

    /// Sets the value.
    #[setter]
    fn set_value(&self, value: u64) -> PyResult<()> {
        self.counter.get()?.set(value);
        Ok(())
    }

    /// Adds `n` (wrapping); returns the value before.
    #[pyo3(signature = (n=1))]
    fn add(&self, n: u64) -> PyResult<u64> {
        Ok(self.counter.get()?.add(n))
    }

    /// Subtracts `n` (wrapping); returns the value before.
    #[pyo3(signature = (n=1))]
    fn sub(&self, n: u64) -> PyResult<u64> {
        Ok(self.counter.get()?.sub(n))
    }

    /// Sets it to `new` if it is `current`; returns the value it had.
    fn compare_exchange(&self, current: u64, new: u64) -> PyResult<u64> {
        Ok(self.counter.get()?.compare_exchange(current, new).unwrap_or_else(|v| v))
    }
});
