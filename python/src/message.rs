//! A task's message (a pickled call, or a pickled outcome) between the
//! coordinator and a helper. `shmkit._worker.dumps` gives pickle bytes, or
//! a list of parts: the pickle and its out-of-band buffers (numpy arrays).
//! Small messages travel through the pool's rings, in one `Vec`. A message
//! of [`BIG`] bytes or more travels in a segment of its own, tag `S` and its
//! name on the wire: each buffer is copied once, into the segment, and the
//! other side unpickles from the mapping in place, so a large numpy array
//! arrives with that one copy (the rings would copy it several times, in
//! pieces).
//!
//! Who removes a message's segment: its maker, for an argument (the
//! coordinator keeps the owner handle until the task's outcome is taken,
//! or the task is cancelled); its reader, for a result (the coordinator
//! removes the name as it opens it; the helper, which made it, keeps its
//! owner handle until it sees the name gone). A process killed meanwhile
//! leaves a segment whose creator is dead, which `shmkit gc` collects.

use std::sync::Mutex;

use pyo3::buffer::PyBuffer;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use shmkit::array::DynArray;
use shmkit::DType;

use crate::errors;

/// Messages this long or longer go in a segment of their own: below it a
/// segment's set-up (create, map, open, remove: about 100 µs) costs more
/// than copying through the rings.
pub(crate) const BIG: usize = 1 << 20;

/// The largest message: the pool's frames are at most 256 MiB (rings), and
/// the same limit keeps a message segment from exhausting `/dev/shm` by
/// mistake.
pub(crate) const LIMIT: usize = (256 << 20) - (64 << 10);

/// The tag of a message that is the name of its segment.
const IN_SEGMENT: u8 = b'S';

/// A message as it goes on the wire: its bytes (after `tag`, if any), and
/// the owner of its segment when it is big.
pub(crate) struct Gathered {
    pub wire: Vec<u8>,
    pub segment: Option<DynArray>,
}

/// `tag` and a message from `shmkit._worker.dumps` (`bytes` or a list of
/// buffers) ready to send: in one `Vec`, or, when big, in a new segment.
pub(crate) fn gather(py: Python<'_>, tag: &[u8], message: &Bound<'_, PyAny>) -> PyResult<Gathered> {
    if let Ok(bytes) = message.cast::<PyBytes>() {
        let bytes = bytes.as_bytes();
        if bytes.len() < BIG {
            return Ok(Gathered { wire: [tag, bytes].concat(), segment: None });
        }
    }
    let parts = match message.cast::<PyBytes>() {
        Ok(_) => vec![PyBuffer::<u8>::get(message)?],
        Err(_) => message.try_iter()?.map(|p| PyBuffer::<u8>::get(&p?)).collect::<PyResult<Vec<_>>>()?,
    };
    let total = parts.iter().map(|p| p.len_bytes()).sum::<usize>();
    if total > LIMIT {
        return Err(too_large(total));
    }
    let mut copied = Ok(());
    let mut fill = |out: &mut [u8]| {
        let mut at = 0;
        for part in &parts {
            let n = part.len_bytes();
            if copied.is_ok() {
                copied = part.copy_to_slice(py, &mut out[at..at + n]);
            }
            at += n;
        }
    };
    if total < BIG {
        let mut wire = vec![0; tag.len() + total];
        wire[..tag.len()].copy_from_slice(tag);
        fill(&mut wire[tag.len()..]);
        return copied.map(|()| Gathered { wire, segment: None });
    }
    let segment = DynArray::create_unique_with(DType::U8, &[total], fill).map_err(errors::core)?;
    copied?;
    let wire = [tag, &[IN_SEGMENT], segment.name().as_bytes()].concat();
    Ok(Gathered { wire, segment: Some(segment) })
}

/// The message `bytes` holds, or names, for `shmkit._worker.loads`:
/// `bytes`; a `bytearray` when it carries out-of-band buffers (tag `B`),
/// so that arrays read from it are writable, as unpickled arrays are; or a
/// writable `memoryview` of its segment, which keeps the mapping alive as
/// long as any array read from it. `take`: also remove the segment's name
/// (the reader of a result does; an argument's segment is its maker's).
pub(crate) fn open<'py>(py: Python<'py>, bytes: &[u8], take: bool) -> PyResult<Bound<'py, PyAny>> {
    match bytes.split_first() {
        Some((&IN_SEGMENT, name)) => {
            let name = std::str::from_utf8(name).map_err(|_| {
                errors::raise("Corrupt", "a task's message names a segment in bytes that are not UTF-8")
            })?;
            let array = DynArray::open(name).map_err(errors::core)?;
            if take {
                // Only that segment, never a namesake; if it is gone already,
                // the mapping is all that is needed.
                let _ = shmkit::admin::remove(name);
            }
            if array.dtype() != DType::U8 || array.shape().len() != 1 {
                return Err(errors::raise("Corrupt", format!("segment '{name}' is not a task's message")));
            }
            let held = Bound::new(py, Message { array })?;
            Ok(PyMemoryView::from(held.as_any())?.into_any())
        }
        Some((b'B', _)) => Ok(PyByteArray::new(py, bytes).into_any()),
        _ => Ok(PyBytes::new(py, bytes).into_any()),
    }
}

/// Removes the segment of a message that will not be read (a result
/// left when its pool is terminated); nothing for a message in bytes.
pub(crate) fn discard(message: &[u8]) {
    if let Some((&IN_SEGMENT, name)) = message.split_first() {
        if let Ok(name) = std::str::from_utf8(name) {
            let _ = shmkit::admin::remove(name);
        }
    }
}

/// A message over [`LIMIT`], with what to do instead.
pub(crate) fn too_large(len: usize) -> PyErr {
    let why = format!(
        "the task's message pickles to {} MiB, over the pool's {} MiB per message: pass big arrays as shmkit \
         arrays (they travel as names) instead",
        len >> 20,
        LIMIT >> 20
    );
    errors::raise("InvalidArgument", why)
}

/// Result segments this helper made whose reader has not yet removed
/// their names: dropping an owner handle removes the name, so each is kept
/// until the coordinator has opened it (and removed the name itself).
static SENT: Mutex<Vec<DynArray>> = Mutex::new(Vec::new());

/// In a helper: keeps `segment`, a result on its way, and lets go of
/// those the coordinator has opened.
pub(crate) fn keep_until_read(segment: DynArray) {
    let mut sent = SENT.lock().unwrap_or_else(|e| e.into_inner());
    sent.retain(name_exists);
    sent.push(segment);
}

/// True while `/dev/shm` has the segment's name (whoever it leads to: a
/// namesake can only appear once the reader removed ours, and then keeping
/// our handle a little longer costs nothing).
fn name_exists(segment: &DynArray) -> bool {
    // shmkit's segments live in /dev/shm (the core's `os::SHM_DIR`).
    std::path::Path::new("/dev/shm").join(segment.name()).exists()
}

/// The memory of a message's segment, as a Python buffer (what
/// `memoryview` reads); it keeps the mapping alive.
#[pyclass(frozen, module = "shmkit._shmkit", name = "_Message")]
struct Message {
    array: DynArray,
}

#[pymethods]
impl Message {
    /// # Safety
    /// Called by Python's buffer protocol with a valid `view` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: i32) -> PyResult<()> {
        let (ptr, len) = (slf.get().array.data_ptr(), slf.get().array.byte_len());
        let len = isize::try_from(len).map_err(|_| errors::raise("Corrupt", "a message segment too large"))?;
        // SAFETY: `view` is the valid Py_buffer Python passed in; `ptr` and
        // `len` are the data of the mapping `slf` owns, which stays mapped as
        // long as the view (PyBuffer_FillInfo stores a reference to `slf` in
        // `view.obj`); the data is writable (the segment is mapped read-write).
        let filled = unsafe { ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr.cast(), len, 0, flags) };
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
