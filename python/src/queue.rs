//! A queue of records across processes, as Python's `queue.Queue`: `put`
//! and `get` (blocking, with timeouts, or `_nowait`), `shutdown` for the
//! end of the stream. A handle takes a sender's place at its first `put`
//! and a receiver's at its first `get`, and gives them back on `close`:
//! receivers of a drained queue whose every sender is gone get
//! `shmkit.Disconnected`, as a pipe's reader gets end-of-file.

use std::sync::{Mutex, OnceLock};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use shmkit::sync::{DynQueue, DynReceiver, DynSender, RecvTimeoutError, SendTimeoutError};

use crate::codec::Codec;
use crate::handle::{handle_methods, Handle};
use crate::{blocking, errors, owned};

/// The queue and this handle's ends, taken when first used.
pub(crate) struct Ends {
    queue: DynQueue,
    sender: OnceLock<DynSender>,
    receiver: OnceLock<DynReceiver>,
}

impl owned::Owned for Ends {
    fn owns(&self) -> bool {
        self.queue.is_owner()
    }
    fn remove(&self) -> shmkit::Result<()> {
        self.queue.remove_name()
    }
    fn persist(&self) -> shmkit::Result<()> {
        self.queue.persist()
    }
    fn name(&self) -> &str {
        self.queue.name()
    }
}

/// A bounded queue of records of one numpy dtype (the native base of
/// `shmkit.Queue`).
#[pyclass(subclass, frozen, weakref, module = "shmkit._shmkit", name = "_Queue")]
pub(crate) struct Queue {
    ends: Handle<Ends>,
    codec: Codec,
    /// Serialises taking an end (two threads' first `put` take one).
    taking: Mutex<()>,
}

impl Queue {
    fn sender(&self, ends: &Ends) -> PyResult<()> {
        let _one = self.taking.lock().unwrap_or_else(|e| e.into_inner());
        if ends.sender.get().is_none() {
            let _ = ends.sender.set(ends.queue.sender().map_err(errors::core)?);
        }
        Ok(())
    }

    fn receiver(&self, ends: &Ends) -> PyResult<()> {
        let _one = self.taking.lock().unwrap_or_else(|e| e.into_inner());
        if ends.receiver.get().is_none() {
            let _ = ends.receiver.set(ends.queue.receiver().map_err(errors::core)?);
        }
        Ok(())
    }

    fn record(&self, ends: &Ends, item: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        let mut bytes = vec![0; ends.queue.item_size()];
        self.codec.encode(item, &mut bytes)?;
        Ok(bytes)
    }
}

handle_methods!(closing Queue, ends, {
    #[new]
    #[pyo3(signature = (op, name=None, dtype=None, capacity=0))]
    fn new(py: Python<'_>, op: &str, name: Option<&str>, dtype: Option<&str>, capacity: u64) -> PyResult<Self> {
        let queue = match (op, name, dtype) {
            ("create", Some(n), Some(d)) => DynQueue::create(n, d, capacity),
            ("create_unique", _, Some(d)) => DynQueue::create_unique(d, capacity),
            ("open", Some(n), _) => DynQueue::open(n),
            _ => return Err(PyValueError::new_err("use Queue.create(name, dtype, capacity), Queue.create_unique(...) or Queue.open(name)")),
        }
        .map_err(errors::core)?;
        let codec = Codec::of(py, queue.dtype(), queue.item_size())?;
        let ends = Ends { queue, sender: OnceLock::new(), receiver: OnceLock::new() };
        Ok(Queue { ends: Handle::of(ends, "Queue"), codec, taking: Mutex::new(()) })
    }

    /// The records' numpy dtype string.
    #[getter]
    fn dtype(&self) -> PyResult<String> {
        Ok(self.ends.get()?.queue.dtype().to_owned())
    }

    /// Most records the queue holds.
    #[getter]
    fn capacity(&self) -> PyResult<u64> {
        Ok(self.ends.get()?.queue.capacity())
    }

    /// Puts `item`, waiting for room as long as it takes (`block=False`:
    /// not at all; `timeout`: at most that many seconds), then
    /// `shmkit.Full`. `shmkit.ShutDown` once the queue is shut down;
    /// `shmkit.Disconnected` once every receiver is gone.
    #[pyo3(signature = (item, block=true, timeout=None))]
    fn put(&self, py: Python<'_>, item: &Bound<'_, PyAny>, block: bool, timeout: Option<f64>) -> PyResult<()> {
        let ends = self.ends.get()?;
        self.sender(&ends)?;
        let bytes = self.record(&ends, item)?;
        let tx = ends.sender.get().expect("taken above");
        if !block {
            return tx.try_send(&bytes).map_err(errors::try_send);
        }
        let sent = blocking::wait(py, blocking::limit(timeout)?, |slice| match tx.send_timeout(&bytes, slice) {
            Err(SendTimeoutError::Timeout(())) => None,
            other => Some(other),
        })?;
        match sent {
            Some(r) => r.map_err(errors::send_timeout),
            None => Err(errors::raise("Full", format!("no room in Queue {:?} in time", self.ends.name()))),
        }
    }

    /// `put(item, block=False)`.
    fn put_nowait(&self, py: Python<'_>, item: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, item, false, None)
    }

    /// Takes the oldest record, waiting as long as it takes (`block=False`:
    /// not at all; `timeout`: at most that many seconds), then
    /// `shmkit.Empty`. At the end of the stream (shut down, or every sender
    /// gone, and drained): `shmkit.ShutDown` or `shmkit.Disconnected`.
    #[pyo3(signature = (block=true, timeout=None))]
    fn get<'py>(&self, py: Python<'py>, block: bool, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let ends = self.ends.get()?;
        self.receiver(&ends)?;
        let rx = ends.receiver.get().expect("taken above");
        let mut out = vec![0; ends.queue.item_size()];
        if !block {
            rx.try_recv_into(&mut out).map_err(errors::try_recv)?;
            return self.codec.decode(py, &out);
        }
        let got = blocking::wait(py, blocking::limit(timeout)?, |slice| match rx.recv_timeout_into(&mut out, slice) {
            Err(RecvTimeoutError::Timeout) => None,
            other => Some(other),
        })?;
        match got {
            Some(r) => r.map_err(errors::recv_timeout)?,
            None => return Err(errors::raise("Empty", format!("nothing arrived in Queue {:?} in time", self.ends.name()))),
        }
        self.codec.decode(py, &out)
    }

    /// `get(block=False)`.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, false, None)
    }

    /// Ends the stream: puts fail from now on, and `get` raises
    /// `shmkit.ShutDown` once the queue is drained. Waits at most `timeout`
    /// seconds for the queue's internal lock (`shmkit.Timeout`).
    #[pyo3(signature = (timeout=None))]
    fn shutdown(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let ends = self.ends.get()?;
        let done = blocking::wait(py, blocking::limit(timeout)?, |slice| ends.queue.shutdown_timeout(slice).ok())?;
        done.ok_or_else(|| errors::raise("Timeout", "the queue's lock stayed held: not shut down"))
    }

    /// True once shut down.
    fn is_shutdown(&self) -> PyResult<bool> {
        Ok(self.ends.get()?.queue.is_shutdown())
    }

    /// Records in the queue now.
    fn qsize(&self) -> PyResult<usize> {
        Ok(self.ends.get()?.queue.len())
    }

    fn __len__(&self) -> PyResult<usize> {
        self.qsize()
    }

    /// True if no record is in the queue now.
    fn empty(&self) -> PyResult<bool> {
        Ok(self.qsize()? == 0)
    }

    /// True if the queue is full now.
    fn full(&self) -> PyResult<bool> {
        let ends = self.ends.get()?;
        Ok(ends.queue.len() as u64 >= ends.queue.capacity())
    }

    fn __repr__(&self) -> String {
        match self.ends.get() {
            Ok(e) => format!("shmkit.Queue({:?}, {}, qsize={}, capacity={})", self.ends.name(), e.queue.dtype(), e.queue.len(), e.queue.capacity()),
            Err(_) => format!("shmkit.Queue({:?}, closed)", self.ends.name()),
        }
    }
});
