//! What is in `/dev/shm` and removing what crashes left: `shmkit.ls()`,
//! `inspect`, `gc`, `remove`, `unlink`, `doctor`, as plain dicts and lists.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use shmkit::admin::{self, Gc, Presence, RemoveIpc, SegmentInfo};

use crate::errors;

/// A segment's description, as a dict.
fn info_dict<'py>(py: Python<'py>, info: &SegmentInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &info.name)?;
    d.set_item("kind", info.kind.to_string())?;
    d.set_item("bytes", info.total_len)?;
    d.set_item("data_offset", info.data_offset)?;
    if let Some(a) = &info.array {
        d.set_item("dtype", &a.dtype)?;
        d.set_item("shape", pyo3::types::PyTuple::new(py, &a.shape)?)?;
        d.set_item("fortran_order", a.fortran)?;
    }
    if !info.types.is_empty() {
        let types = PyDict::new(py);
        info.types.iter().try_for_each(|(role, tag)| types.set_item(role, tag))?;
        d.set_item("types", types)?;
    }
    if let Some(c) = &info.creator {
        d.set_item("creator_pid", c.pid)?;
        let alive = match c.presence {
            Presence::Alive => Some(true),
            Presence::Gone => Some(false),
            _ => None,
        };
        d.set_item("creator_alive", alive)?;
    }
    d.set_item("persistent", info.persistent)?;
    if let Some(c) = &info.collection {
        d.set_item("len", c.len)?;
        d.set_item("capacity", c.capacity)?;
        d.set_item("recoveries", c.recoveries)?;
    }
    Ok(d)
}

/// Every entry of `/dev/shm` shmkit can read, as dicts: `name`, `kind`,
/// `bytes`, `data_offset` (where the data starts in the file), `dtype` and `shape` (arrays), `types` (other kinds),
/// `creator_pid`, `creator_alive`, `persistent`, `garbage`, and `removing`
/// (a removal cut short) or `error` (an entry shmkit could not read).
#[pyfunction]
pub(crate) fn ls(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let listed = admin::list().map_err(errors::core)?;
    let rows = listed.iter().map(|l| -> PyResult<Bound<'_, PyDict>> {
        let d = match &l.info {
            Ok(info) => info_dict(py, info)?,
            Err(e) => {
                let d = PyDict::new(py);
                d.set_item("name", &l.name)?;
                d.set_item("error", e.to_string())?;
                d
            }
        };
        d.set_item("garbage", l.is_garbage())?;
        d.set_item("removing", l.removing.as_deref())?;
        Ok(d)
    });
    PyList::new(py, rows.collect::<PyResult<Vec<_>>>()?)
}

/// One segment's description (see `ls`), without knowing its type.
#[pyfunction]
pub(crate) fn inspect<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    info_dict(py, &admin::inspect(name).map_err(errors::core)?)
}

/// Removes segments whose creator is gone (and that were not persisted),
/// and finishes removals that were cut short; only names starting with
/// `prefix`, or made by `creator` (a pid), if given. Returns what it
/// removed (with `dry_run`, what it would remove).
#[pyfunction]
#[pyo3(signature = (dry_run=false, prefix=None, creator=None))]
pub(crate) fn gc(dry_run: bool, prefix: Option<&str>, creator: Option<u32>) -> PyResult<Vec<String>> {
    let mut gc = Gc::new().dry_run(dry_run);
    if let Some(p) = prefix {
        gc = gc.prefix(p);
    }
    if let Some(pid) = creator {
        gc = gc.creator(pid);
    }
    gc.run().map_err(errors::core)
}

/// Removes shmkit segment `name` (a persisted one, say), and only it.
#[pyfunction]
pub(crate) fn remove(name: &str) -> PyResult<()> {
    admin::remove(name).map_err(errors::core)
}

/// Removes entry `name` of `/dev/shm` whatever it is (`unlink(2)`).
#[pyfunction]
pub(crate) fn unlink(name: &str) -> PyResult<()> {
    admin::unlink(name).map_err(errors::core)
}

/// The limits shared memory meets here and what to change, as a dict.
#[pyfunction]
pub(crate) fn doctor(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let c = admin::doctor().map_err(errors::core)?;
    let d = PyDict::new(py);
    d.set_item("dev_shm_size", c.dev_shm_size)?;
    d.set_item("dev_shm_free", c.dev_shm_free)?;
    d.set_item("segments", c.segments)?;
    d.set_item("segment_bytes", c.segment_bytes)?;
    d.set_item("garbage", c.garbage)?;
    d.set_item("garbage_bytes", c.garbage_bytes)?;
    // Whether systemd-logind removes this user's segments at logout:
    // True (and where that was read), False (and why), or None (no logind).
    let (removes, why) = match &c.remove_ipc {
        RemoveIpc::Yes { from } => (Some(true), Some(from.as_str())),
        RemoveIpc::No { why } => (Some(false), Some(why.as_str())),
        _ => (None, None), // NotHere, or a case this binding does not know yet
    };
    d.set_item("remove_ipc", removes)?;
    d.set_item("remove_ipc_why", why)?;
    d.set_item("max_map_count", c.max_map_count)?;
    d.set_item("open_files_limit", c.open_files_limit)?;
    d.set_item("advice", c.advice)?;
    Ok(d)
}
