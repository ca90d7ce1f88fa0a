//! The pool from Python: helpers are Python interpreters that run the
//! Rust helper loop (`_serve`), so the Rust driver keeps the blame
//! record, the timeouts, the kills and the replacements; only the task
//! body is Python (`shmkit._worker.run`, a pickled call in, a pickled
//! outcome out). `shmkit.ProcessPool` and `shmkit.Pool` (Python) build
//! on `_Pool`.

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use serde_bytes::ByteBuf;

use shmkit::array::DynArray;

use shmkit::pool::{Completions, PoolError, TaskError};
use shmkit::{Pool, Registry};

use crate::message::{self, Outgoing};
use crate::{blocking, errors};

/// The task every Python helper serves: `shmkit._worker.run(payload)`.
/// Its outcome is one tag byte and the rest: `P` and a pickle (the
/// worker's own envelope: a result, or an exception and its traceback),
/// or `T` and UTF-8 text, when even the worker failed.
fn py_call(payload: ByteBuf) -> ByteBuf {
    static RUN: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    Python::attach(|py| {
        let run = || -> PyResult<Bound<'_, PyAny>> {
            let run = RUN.get_or_try_init(py, || py.import("shmkit._worker")?.getattr("run").map(Bound::unbind))?;
            run.bind(py).call1((message::open(py, &payload)?,))
        };
        let text = |what: &str, e: PyErr| ByteBuf::from([b"T".as_slice(), format!("{what}: {e}").as_bytes()].concat());
        match run() {
            Ok(out) => match message::gather(py, b"P", &out, false) {
                Ok((wire, _)) => ByteBuf::from(wire),
                Err(e) => text("the task ran, but its result could not be sent back", e),
            },
            Err(e) => text("the helper could not run the task", e),
        }
    })
}

/// A helper's initializer: `shmkit._worker.initialize(payload)`; a raise
/// fails the helper's start, with the traceback as the reason.
fn py_init(payload: ByteBuf) -> Result<(), std::io::Error> {
    Python::attach(|py| {
        let run =
            py.import("shmkit._worker").and_then(|w| w.getattr("initialize")?.call1((message::open(py, &payload)?,)));
        run.map(drop).map_err(|e| std::io::Error::other(traceback(py, &e)))
    })
}

/// `e` with its traceback, as Python prints it.
fn traceback(py: Python<'_>, e: &PyErr) -> String {
    let formatted = py
        .import("traceback")
        .and_then(|t| t.getattr("format_exception")?.call1((e.value(py),)))
        .and_then(|lines| lines.extract::<Vec<String>>());
    formatted.map_or_else(|_| e.to_string(), |lines| lines.concat())
}

fn python_tasks(r: &mut Registry) {
    r.add(py_call).add(py_init);
}

/// In a helper started by a `_Pool`: serves tasks until the pool is
/// gone, then exits the process (never returns). Elsewhere, an error.
#[pyfunction]
pub(crate) fn _serve(py: Python<'_>) -> PyResult<()> {
    if !shmkit::pool::is_helper() {
        return Err(errors::raise("InvalidArgument", "not a pool helper: shmkit._helper is started by shmkit's pools"));
    }
    py.detach(|| shmkit::serve(python_tasks))
}

/// In a process a pool started as a helper: lets the helper's Python
/// code (the coordinator's main script, imported before serving) use
/// shmkit; false, doing nothing, anywhere else.
#[pyfunction]
pub(crate) fn _prepare_helper() -> bool {
    shmkit::pool::prepare_helper()
}

/// How long `next_done` polls before it sleeps (as the Rust pool's
/// waiters do: `pool/transport/spin.rs`).
const SPIN: Duration = Duration::from_micros(60);

/// A pool of Python helpers (the native half of `shmkit.ProcessPool`).
#[pyclass(frozen, module = "shmkit._shmkit", name = "_Pool")]
pub(crate) struct PyPool {
    pool: Mutex<Option<Pool>>,
    /// Finished tasks' outcomes. Not dropped in a forked child: dropping
    /// it cancels its tasks, which are the parent's.
    done: ManuallyDrop<Completions<ByteBuf>>,
    /// The segments of big arguments (see `message`), by task, until the
    /// task's outcome is taken or it is cancelled.
    arguments: Mutex<HashMap<u64, DynArray>>,
    /// The process that built it: a forked child may not use its helpers.
    maker: u32,
}

/// What `_Pool.next_done` hands back for one task: `("ok", bytes)`,
/// `("text", message)`, or `("error", class, message, signal)`.
type Outcome = (&'static str, Py<PyAny>, Option<String>, Option<i32>);

#[pymethods]
impl PyPool {
    /// Starts `helpers` helpers running `program args` (with `env` added)
    /// and waits until they are ready. `timeout`: seconds a task may run
    /// before its helper is killed; `init`: a pickled initializer.
    #[new]
    #[pyo3(signature = (helpers, program, args, env, timeout=None, retries=0, max_tasks=None, init=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        helpers: usize,
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        timeout: Option<f64>,
        retries: u32,
        max_tasks: Option<usize>,
        init: Option<Vec<u8>>,
    ) -> PyResult<Self> {
        let mut b = Pool::builder().tasks(python_tasks).helpers(helpers).program(program).retries(retries);
        for a in args {
            b = b.arg(a);
        }
        for (k, v) in env {
            b = b.env(k, v);
        }
        if let Some(t) = blocking::limit(timeout)?.filter(|t| *t != Duration::MAX) {
            b = b.timeout(t);
        }
        if let Some(n) = max_tasks {
            b = b.max_tasks_per_helper(n);
        }
        if let Some(payload) = init {
            b = b.initializer(py_init, ByteBuf::from(payload));
        }
        let pool = py.detach(|| b.build()).map_err(start_failed)?;
        Ok(PyPool {
            pool: Mutex::new(Some(pool)),
            done: ManuallyDrop::new(Completions::new()),
            arguments: Mutex::default(),
            maker: std::process::id(),
        })
    }

    /// Queues a call gathered by `_message`; its key for `next_done` and
    /// `cancel`.
    fn submit(&self, message: &Bound<'_, Outgoing>) -> PyResult<u64> {
        self.check_process()?;
        let (wire, segment) = message.get().take()?;
        let pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let pool = pool.as_ref().ok_or_else(|| errors::raise("Closed", "the pool was terminated"))?;
        let handle = pool.submit(py_call, ByteBuf::from(wire));
        let Some(segment) = segment else { return Ok(self.done.add(handle)) };
        // Under the lock `next_done` takes to let go of the segment: the
        // task may finish before `add` returns.
        let mut arguments = self.arguments.lock().unwrap_or_else(|e| e.into_inner());
        let key = self.done.add(handle);
        arguments.insert(key, segment);
        Ok(key)
    }

    /// The tasks finished now, `(key, outcome)` each (at most `most`),
    /// waiting at most `timeout` seconds with the GIL released for the
    /// first; empty if none finished in time. Taking them in batches
    /// keeps the GIL hand-overs per task few under load.
    #[pyo3(signature = (timeout, most=1024))]
    fn next_done(&self, py: Python<'_>, timeout: f64, most: usize) -> Vec<(u64, Outcome)> {
        let limit = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(blocking::SLICE);
        let mut batch = Vec::new();
        if most == 0 {
            return Vec::new();
        }
        py.detach(|| {
            if let Some(first) = self.first_done(limit) {
                batch.push(first);
                while batch.len() < most {
                    match self.done.next_timeout(Duration::ZERO) {
                        Some(next) => batch.push(next),
                        None => break,
                    }
                }
            }
        });
        if !batch.is_empty() {
            let mut arguments = self.arguments.lock().unwrap_or_else(|e| e.into_inner());
            batch.iter().for_each(|(key, _)| drop(arguments.remove(key)));
        }
        batch.into_iter().map(|(key, result)| (key, outcome(py, result))).collect()
    }

    /// Cancels task `key`: a queued one never runs, a running one has its
    /// helper killed. False if it had finished.
    fn cancel(&self, key: u64) -> PyResult<bool> {
        self.check_process()?;
        let cancelled = self.done.cancel(key);
        if cancelled {
            self.arguments.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        }
        Ok(cancelled)
    }

    /// Tasks whose outcome has not been taken.
    fn pending(&self) -> usize {
        self.done.len()
    }

    /// The helpers' process ids.
    fn helper_pids(&self) -> PyResult<Vec<u32>> {
        self.check_process()?;
        let pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        Ok(pool.as_ref().map(Pool::helper_pids).unwrap_or_default())
    }

    /// Stops the helpers now (killing running tasks); harmless twice. In a
    /// forked child it only lets go of the parent's pool, untouched.
    fn terminate(&self, py: Python<'_>) {
        let pool = self.pool.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (pool, std::process::id() == self.maker) {
            (Some(p), true) => py.detach(|| p.terminate()),
            // The parent's helpers and driver threads are not this
            // process's: stopping them would kill its parent's work, and
            // joining threads a fork did not copy would never return.
            (Some(p), false) => std::mem::forget(p),
            (None, _) => {}
        }
        self.let_go();
    }
}

impl Drop for PyPool {
    /// Collected without `terminate()`: stops the helpers at once (rather
    /// than wait for queued work, as a dropped `Pool` does); in a forked
    /// child, leaves the parent's pool alone.
    fn drop(&mut self) {
        let pool = self.pool.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        match (pool, std::process::id() == self.maker) {
            (Some(p), true) => p.terminate(),
            (Some(p), false) => std::mem::forget(p),
            (None, _) => {}
        }
        self.let_go();
        if std::process::id() == self.maker {
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.done) };
        }
    }
}

impl PyPool {
    /// The next task to finish within `limit`: polled for a short window
    /// first (yielding the CPU between looks), since a sleeping thread's
    /// wake-up costs about 20 µs here, as much as a whole short task.
    fn first_done(&self, limit: Duration) -> Option<(u64, Result<ByteBuf, TaskError>)> {
        let start = Instant::now();
        let window = limit.min(SPIN);
        loop {
            if let Some(done) = self.done.next_timeout(Duration::ZERO) {
                return Some(done);
            }
            if start.elapsed() >= window {
                return self.done.next_timeout(limit.saturating_sub(start.elapsed()));
            }
            std::thread::yield_now();
        }
    }

    /// Once the helpers are stopped: removes the segments of big arguments
    /// (a forked child's handles remove nothing: the names are its parent's).
    fn let_go(&self) {
        self.arguments.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn check_process(&self) -> PyResult<()> {
        match std::process::id() == self.maker {
            true => Ok(()),
            false => Err(errors::raise(
                "Inherited",
                "this pool belongs to the process that made it (this is a forked child): make a new pool here",
            )),
        }
    }
}

fn outcome(py: Python<'_>, result: Result<ByteBuf, TaskError>) -> Outcome {
    let text = |s: String| s.into_pyobject(py).expect("a str").into_any().unbind();
    match result {
        Ok(bytes) => match bytes.split_first() {
            Some((b'P', pickle)) => match message::open(py, pickle) {
                Ok(message) => ("ok", message.unbind(), None, None),
                Err(e) => ("text", text(format!("the task's result could not be read: {e}")), None, None),
            },
            Some((_, message)) => ("text", text(String::from_utf8_lossy(message).into_owned()), None, None),
            None => ("text", text("the helper sent an empty result".into()), None, None),
        },
        Err(e) => {
            let (class, signal) = match &e {
                TaskError::WorkerDied { signal, .. } => ("WorkerDied", *signal),
                TaskError::TimedOut(_) => ("TaskTimeout", None),
                TaskError::Cancelled => ("Cancelled", None),
                TaskError::NoHelper(_) => ("WorkerStartFailed", None),
                _ => ("Error", None),
            };
            ("error", text(class.to_owned()), Some(e.to_string()), signal)
        }
    }
}

/// A pool that did not start, as `shmkit.WorkerStartFailed`.
fn start_failed(e: PoolError) -> PyErr {
    match e {
        PoolError::Spawn { .. }
        | PoolError::HelperExited(_)
        | PoolError::StartTimeout(_)
        | PoolError::InitFailed(_) => errors::raise("WorkerStartFailed", e.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}
