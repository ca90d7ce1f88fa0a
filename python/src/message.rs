//! A task's message (a pickled call, or a pickled outcome) between the
//! coordinator and a helper. `shmkit._worker.dumps` gives pickle bytes, or
//! a list of parts: the pickle and its out-of-band buffers (numpy arrays).
//!
//! Messages travel through the pool's rings, in one `Vec`, except a call
//! of [`BIG`] bytes or more: it goes in a segment of its own, tag `S` and
//! its name on the wire. Each buffer is copied once, into the segment, with
//! the GIL released; the helper maps the segment copy-on-write
//! (`MAP_PRIVATE`) and unpickles in place, so a large numpy argument
//! arrives with that one copy, and what a task writes into it stays its
//! own: a rerun (the pool's `retries`) reads the argument as it was sent.
//!
//! The coordinator made the segment and keeps its owner handle until the
//! task's outcome is taken, or it is cancelled, or the pool is gone: then
//! the name goes. A coordinator killed meanwhile leaves a segment whose
//! creator is dead, which `shmkit gc` collects. Results always take the
//! rings: a helper would have to keep a result's segment until the
//! coordinator read it, and a result nobody reads (its task cancelled as
//! it finished, its helper retired) would be left behind.

use std::fs::File;

use std::ptr::NonNull;

use memmap2::{MmapMut, MmapOptions};
use pyo3::buffer::PyBuffer;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use shmkit::array::DynArray;
use shmkit::{DType, Error};

use crate::errors;

/// Calls this long or longer go in a segment of their own: below it a
/// segment's set-up (create, map, open, remove: about 100 µs) costs more
/// than copying through the rings.
pub(crate) const BIG: usize = 1 << 20;

/// The largest message: the pool's frames are at most 256 MiB (rings), and
/// the same limit keeps a message segment from exhausting `/dev/shm` by
/// mistake.
pub(crate) const LIMIT: usize = (256 << 20) - (64 << 10);

/// The tag of a message that is the name of its segment.
const IN_SEGMENT: u8 = b'S';

/// A call gathered for sending (`_message`): its bytes on the wire, and
/// the owner of its segment when it is big. Made before the pool's lock is
/// taken, so that a big copy holds up neither other submitters nor the
/// delivery of results.
#[pyclass(frozen, module = "shmkit._shmkit", name = "_Outgoing")]
pub(crate) struct Outgoing {
    pub wire: std::sync::Mutex<Option<(Vec<u8>, Option<DynArray>)>>,
}

impl Outgoing {
    /// The bytes and the segment's owner, once.
    pub fn take(&self) -> PyResult<(Vec<u8>, Option<DynArray>)> {
        let mut wire = self.wire.lock().unwrap_or_else(|e| e.into_inner());
        wire.take().ok_or_else(|| errors::raise("InvalidArgument", "this message was submitted already"))
    }
}

/// Gathers a call (`bytes`, or a list of buffers) for `_Pool.submit`.
#[pyfunction]
pub(crate) fn _message(py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Outgoing> {
    let (wire, segment) = gather(py, b"", message, true)?;
    Ok(Outgoing { wire: std::sync::Mutex::new(Some((wire, segment))) })
}

/// `tag` and a message (`bytes` or a list of buffers) ready to send: in
/// one `Vec`, or, when big and `segment` allows, in a new segment (whose
/// owner comes back too). A segment `/dev/shm` has no room for falls back
/// to the `Vec`.
pub(crate) fn gather(
    py: Python<'_>,
    tag: &[u8],
    message: &Bound<'_, PyAny>,
    segment: bool,
) -> PyResult<(Vec<u8>, Option<DynArray>)> {
    if let Ok(bytes) = message.cast::<PyBytes>() {
        if bytes.as_bytes().len() < BIG || !segment {
            return checked([tag, bytes.as_bytes()].concat()).map(|v| (v, None));
        }
    }
    let parts = match message.cast::<PyBytes>() {
        Ok(_) => vec![PyBuffer::<u8>::get(message)?],
        Err(_) => message.try_iter()?.map(|p| PyBuffer::<u8>::get(&p?)).collect::<PyResult<Vec<_>>>()?,
    };
    if parts.iter().any(|p| !p.is_c_contiguous()) {
        return Err(errors::raise("InvalidArgument", "a message's parts must be contiguous buffers"));
    }
    let total = parts.iter().map(|p| p.len_bytes()).sum::<usize>();
    if total > LIMIT {
        return Err(too_large(total));
    }
    // SAFETY (for `copy`): each part is a C-contiguous buffer of
    // `len_bytes` bytes at `buf_ptr`, kept valid by its `PyBuffer` (held
    // in `parts` until after the copy; an exporter cannot resize while
    // exported) and readable without the GIL; `out` has room for all.
    let copy = |out: &mut [u8]| {
        let mut at = 0;
        for part in &parts {
            let n = part.len_bytes();
            // SAFETY: see above; `out[at..at + n]` is inside `out`, which
            // does not overlap a Python buffer.
            unsafe { std::ptr::copy_nonoverlapping(part.buf_ptr().cast::<u8>(), out[at..at + n].as_mut_ptr(), n) };
            at += n;
        }
    };
    let sendable = SendPtr(&copy);
    if segment && total >= BIG {
        let made = py.detach(|| DynArray::create_unique_with(DType::U8, &[total], |out| (sendable.get())(out)));
        match made {
            Ok(array) => return Ok(([tag, &[IN_SEGMENT], array.name().as_bytes()].concat(), Some(array))),
            Err(Error::NoSpace { .. }) => {} // /dev/shm is full: the rings need no room there
            Err(e) => return Err(errors::core(e)),
        }
    }
    let mut wire = vec![0; tag.len() + total];
    wire[..tag.len()].copy_from_slice(tag);
    py.detach(|| (sendable.get())(&mut wire[tag.len()..]));
    Ok((wire, None))
}

/// The copy closure, moved into `detach`: its buffers stay exported by
/// the `PyBuffer`s the calling thread holds, so no Python object is
/// touched without the GIL.
struct SendPtr<'a, F>(&'a F);
// SAFETY: the closure only reads the exported buffers' memory and writes
// the destination it is given; the PyBuffer handles it refers to are not
// used (nor dropped) by the detached thread.
unsafe impl<F> Send for SendPtr<'_, F> {}
// SAFETY: as above: shared use only reads.
unsafe impl<F> Sync for SendPtr<'_, F> {}

impl<'a, F> SendPtr<'a, F> {
    fn get(&self) -> &'a F {
        self.0
    }
}

/// `wire` if it fits in a message.
fn checked(wire: Vec<u8>) -> PyResult<Vec<u8>> {
    match wire.len() > LIMIT {
        true => Err(too_large(wire.len())),
        false => Ok(wire),
    }
}

/// The message `bytes` holds, or names, for `shmkit._worker.loads`:
/// `bytes`; a `bytearray` when it carries out-of-band buffers (tag `B`),
/// so that arrays read from it are writable, as unpickled arrays are; or a
/// `memoryview` of a private (copy-on-write) mapping of its segment, which
/// keeps the mapping alive as long as any array read from it.
pub(crate) fn open<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    match bytes.split_first() {
        Some((&IN_SEGMENT, name)) => {
            let name = std::str::from_utf8(name).map_err(|_| {
                errors::raise("Corrupt", "a task's message names a segment in bytes that are not UTF-8")
            })?;
            let held = Bound::new(py, Message::map(name)?)?;
            Ok(PyMemoryView::from(held.as_any())?.into_any())
        }
        Some((b'B', _)) => Ok(PyByteArray::new(py, bytes).into_any()),
        _ => Ok(PyBytes::new(py, bytes).into_any()),
    }
}

/// A message too long, with what to do instead.
pub(crate) fn too_large(len: usize) -> PyErr {
    let why = format!(
        "the task's message pickles to {} MiB, over the pool's {} MiB per message: pass big arrays as shmkit \
         arrays (they travel as names) instead",
        len >> 20,
        LIMIT >> 20
    );
    errors::raise("InvalidArgument", why)
}

/// A message segment mapped copy-on-write, as a Python buffer (what
/// `memoryview` reads); it keeps the mapping alive.
#[pyclass(frozen, module = "shmkit._shmkit", name = "_Message")]
struct Message {
    _map: MmapMut,
    /// The data (from `as_mut_ptr` when mapped, so writes through it are
    /// allowed).
    data: NonNull<u8>,
    len: usize,
}

impl Message {
    /// Maps segment `name` privately: opened through shmkit first, which
    /// checks it is a segment and reads where its data lies; then mapped
    /// again, `MAP_PRIVATE`, through the same file.
    fn map(name: &str) -> PyResult<Message> {
        let array = DynArray::open(name).map_err(errors::core)?;
        let info = array.info().map_err(errors::core)?;
        if array.dtype() != DType::U8 || array.shape().len() != 1 {
            return Err(errors::raise("Corrupt", format!("segment '{name}' is not a task's message")));
        }
        // shmkit's segments live in /dev/shm (the core's `os::SHM_DIR`).
        let file = File::open(format!("/dev/shm/{name}")).map_err(PyErr::from)?;
        let same = file.metadata().is_ok_and(|m| m.len() == info.total_len as u64);
        let fits = info.data_offset.checked_add(info.data_len).is_some_and(|end| end <= info.total_len);
        if !same || !fits {
            return Err(errors::raise("Corrupt", format!("segment '{name}' changed as it was opened")));
        }
        // SAFETY: a private mapping of a regular file: writes stay in this
        // process, and its length was just checked against the file's; the
        // coordinator never truncates a message segment (it only removes
        // its name), so the pages stay backed.
        let mut map = unsafe { MmapOptions::new().len(info.total_len).map_copy(&file) }.map_err(PyErr::from)?;
        // SAFETY: `data_offset + data_len <= total_len`, the mapping's length
        // (checked above).
        let data = unsafe { map.as_mut_ptr().add(info.data_offset) };
        let data = NonNull::new(data).expect("a mapping is never at address 0");
        Ok(Message { _map: map, data, len: info.data_len })
    }
}

// SAFETY: `data` points into `_map`, which the struct owns and never moves
// or unmaps before it is dropped; Rust never reads or writes through it
// (only Python's buffer users do, as with any bytearray).
unsafe impl Send for Message {}
// SAFETY: as above; the struct itself is never changed after it is made.
unsafe impl Sync for Message {}

#[pymethods]
impl Message {
    /// # Safety
    /// Called by Python's buffer protocol with a valid `view` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: i32) -> PyResult<()> {
        let me = slf.get();
        let len = isize::try_from(me.len).map_err(|_| errors::raise("Corrupt", "a message segment too large"))?;
        // SAFETY: `view` is the valid Py_buffer Python passed in; `data` and
        // `len` lie in the private mapping `slf` owns (checked when mapped), which
        // stays mapped as long as the view (PyBuffer_FillInfo keeps a
        // reference to `slf` in `view.obj`); the pages are writable and this
        // process's own (copy-on-write).
        let filled = unsafe { ffi::PyBuffer_FillInfo(view, slf.as_ptr(), me.data.as_ptr().cast(), len, 0, flags) };
        match filled {
            0 => Ok(()),
            _ => Err(PyErr::fetch(slf.py())),
        }
    }

    /// # Safety
    /// Called by Python's buffer protocol; nothing to release (the
    /// reference in `view.obj` is Python's to drop).
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
