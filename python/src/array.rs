//! Shared arrays for Python: a handle on a [`DynArray`], whose numpy view
//! (`numpy.asarray(handle)`, through numpy's array interface) is zero-copy
//! and keeps the handle, and so the mapping, alive; and claims of rows as
//! context managers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use shmkit::array::DynArray;
use shmkit::DType;

use crate::{errors, owned};

/// An array in a named segment (or a `.npy` file). `numpy.asarray(a)` is
/// the whole array, zero-copy and unchecked, as numpy's own memmaps are;
/// `with a.rows_mut(i, j) as v:` claims rows against every other shmkit
/// view, in this process and all others.
#[pyclass(frozen, weakref, module = "shmkit", name = "SharedArray")]
pub(crate) struct SharedArray {
    inner: Arc<DynArray>,
    closed: AtomicBool,
    file: bool,
}

impl SharedArray {
    pub(crate) fn wrap(inner: DynArray, file: bool) -> Self {
        let inner = Arc::new(inner);
        owned::register(&inner);
        SharedArray { inner, closed: AtomicBool::new(false), file }
    }

    fn open(&self) -> PyResult<&DynArray> {
        match self.closed.load(Ordering::Acquire) {
            true => Err(errors::closed("array")),
            false => Ok(&self.inner),
        }
    }

    /// Byte strides of a Fortran-order array (`None`: C order).
    fn strides(&self) -> Option<Vec<isize>> {
        self.inner.is_fortran().then(|| {
            let item = self.inner.dtype().itemsize() as isize;
            let mut acc = item;
            self.inner
                .shape()
                .iter()
                .map(|&n| {
                    let s = acc;
                    acc *= n as isize;
                    s
                })
                .collect()
        })
    }

    /// The interface dict of `shape` at `offset` bytes into the data.
    fn interface<'py>(
        &self,
        py: Python<'py>,
        offset: usize,
        shape: &[usize],
        readonly: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let a = self.open()?;
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("shape", PyTuple::new(py, shape)?)?;
        d.set_item("typestr", a.dtype().descr())?;
        d.set_item("data", (a.data_ptr() as usize + offset, readonly))?;
        d.set_item("strides", self.strides().map(|s| PyTuple::new(py, s)).transpose()?)?;
        Ok(d)
    }
}

#[pymethods]
impl SharedArray {
    /// The segment's name (a file's path, for a file-backed array).
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Length of each axis.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.shape())
    }

    /// The numpy dtype of the elements.
    #[getter]
    fn dtype<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("numpy")?.call_method1("dtype", (self.inner.dtype().descr(),))
    }

    /// Number of axes.
    #[getter]
    fn ndim(&self) -> usize {
        self.inner.shape().len()
    }

    /// Number of elements.
    #[getter]
    fn size(&self) -> usize {
        self.inner.len()
    }

    /// Bytes of data.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.byte_len()
    }

    /// True if this handle created the segment and removes its name on
    /// `close()`, when collected, or at interpreter exit.
    #[getter]
    fn is_owner(&self) -> bool {
        self.inner.is_owner()
    }

    /// True once `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn __len__(&self) -> PyResult<usize> {
        self.inner.shape().first().copied().ok_or_else(|| PyTypeError::new_err("len() of a 0-d array"))
    }

    /// numpy's array interface: `numpy.asarray(a)` is the whole array,
    /// writable, zero-copy, with `a` as its `base` (the mapping lives as
    /// long as any view does). Unchecked, as a numpy memmap is: claims of
    /// other processes do not stop it; use `rows`/`rows_mut` for checked
    /// access.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.interface(py, 0, self.inner.shape(), false)
    }

    /// A claim of rows `start..stop` for reading, as a context manager
    /// whose value is a read-only numpy view of them: `with a.rows(0, 10) as v:`.
    /// `Busy` (on entering) while another view writes any of them.
    fn rows(slf: &Bound<'_, Self>, start: usize, stop: usize) -> Claim {
        Claim::new(slf, Some((start, stop)), false)
    }

    /// A claim of rows `start..stop` for writing, as a context manager
    /// whose value is a writable numpy view of them: `with a.rows_mut(0, 10) as v:`.
    /// `Busy` (on entering) while any other view has any of them.
    fn rows_mut(slf: &Bound<'_, Self>, start: usize, stop: usize) -> Claim {
        Claim::new(slf, Some((start, stop)), true)
    }

    /// A claim of the whole array for reading (see `rows`).
    fn view(slf: &Bound<'_, Self>) -> Claim {
        Claim::new(slf, None, false)
    }

    /// A claim of the whole array for writing (see `rows_mut`).
    fn view_mut(slf: &Bound<'_, Self>) -> Claim {
        Claim::new(slf, None, true)
    }

    /// Releases the handle: an owner removes the segment's name now (an
    /// error if it was removed or replaced already). Views taken before
    /// stay valid: the memory is unmapped once the last of them and this
    /// handle are gone. Calling it twice is harmless.
    fn close(&self) -> PyResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        match self.inner.is_owner() {
            true => self.inner.remove_name().map_err(errors::core),
            false => Ok(()),
        }
    }

    /// Keeps the segment after this handle is gone (owners only); remove
    /// it later with `shmkit.remove(name)` or `shmkit rm`.
    fn persist(&self) -> PyResult<()> {
        self.open()?.persist().map_err(errors::core)
    }

    /// Removes the segment's name now (owners only); the memory stays
    /// mapped for this handle and its views.
    fn remove_name(&self) -> PyResult<()> {
        self.open()?.remove_name().map_err(errors::core)
    }

    /// Writes a file-backed array's changes to disk (`msync(2)`).
    fn flush(&self) -> PyResult<()> {
        self.open()?.flush().map_err(errors::core)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    /// Pickles to its name: unpickling opens it by name.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let opener = if self.file { "open_file" } else { "open" };
        Ok((py.import("shmkit")?.getattr(opener)?, (self.inner.name().to_owned(),)))
    }

    fn __repr__(&self) -> String {
        let state = match (self.closed(), self.inner.is_owner()) {
            (true, _) => ", closed",
            (false, true) => ", owner",
            _ => "",
        };
        let dims: Vec<String> = self.inner.shape().iter().map(usize::to_string).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        format!(
            "shmkit.SharedArray({:?}, shape={shape}, dtype='{}'{state})",
            self.inner.name(),
            self.inner.dtype().descr()
        )
    }
}

/// A claim of rows (or of the whole array) as a context manager: entering
/// takes it (`shmkit.Busy` if another view conflicts, in any process) and
/// gives a numpy view of the claimed rows; leaving releases it. A view kept
/// past the block stays valid memory but is no longer claimed.
#[pyclass(module = "shmkit", name = "Claim")]
pub(crate) struct Claim {
    array: Py<SharedArray>,
    rows: Option<(usize, usize)>,
    exclusive: bool,
    id: Mutex<Option<u64>>,
}

impl Claim {
    fn new(array: &Bound<'_, SharedArray>, rows: Option<(usize, usize)>, exclusive: bool) -> Claim {
        Claim { array: array.clone().unbind(), rows, exclusive, id: Mutex::new(None) }
    }
}

#[pymethods]
impl Claim {
    fn __enter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.array.bind(py).get();
        let a = handle.open()?;
        {
            // Not held across the calls into Python below: a finalizer
            // there could call `release` on this claim.
            let mut id = self.id.lock().unwrap_or_else(|e| e.into_inner());
            if id.is_some() {
                return Err(PyValueError::new_err("this claim is held already: enter it once"));
            }
            let got = match self.rows {
                Some((start, stop)) => a.claim_rows(start..stop, self.exclusive),
                None => a.claim_all(self.exclusive),
            };
            *id = Some(got.map_err(errors::core)?);
        }
        let (offset, shape) = match self.rows {
            Some((start, stop)) if !a.is_fortran() => {
                let row: usize = a.shape()[1..].iter().product::<usize>() * a.dtype().itemsize();
                let mut shape = a.shape().to_vec();
                shape[0] = stop - start;
                (start * row, shape)
            }
            Some((start, stop)) => {
                let mut shape = a.shape().to_vec();
                shape[0] = stop - start;
                (start * a.dtype().itemsize(), shape)
            }
            None => (0, a.shape().to_vec()),
        };
        let view = View { array: self.array.clone_ref(py), offset, shape, readonly: !self.exclusive };
        let made = Bound::new(py, view).and_then(|v| py.import("numpy")?.call_method1("asarray", (v,)));
        made.inspect_err(|_| self.release(py)) // no view, no claim
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.release(py);
        false
    }

    /// Releases the claim now (leaving the block does it too).
    fn release(&self, py: Python<'_>) {
        if let Some(id) = self.id.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.array.bind(py).get().inner.release(id);
        }
    }
}

impl Drop for Claim {
    /// A claim entered and never left (an exception in between, a
    /// generator dropped) is released with its object, not only when the
    /// array goes.
    fn drop(&mut self) {
        if let Some(id) = self.id.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            Python::attach(|py| self.array.bind(py).get().inner.release(id));
        }
    }
}

/// A numpy view of part of a shared array: what a claim's block yields.
#[pyclass(frozen, module = "shmkit._shmkit", name = "_View")]
struct View {
    array: Py<SharedArray>,
    offset: usize,
    shape: Vec<usize>,
    readonly: bool,
}

#[pymethods]
impl View {
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.array.bind(py).get().interface(py, self.offset, &self.shape, self.readonly)
    }
}

/// A dtype shmkit arrays hold, from its numpy dtype string.
fn dtype_of(tag: &str) -> PyResult<DType> {
    DType::from_descr(tag).ok_or_else(|| {
        errors::raise("UnsupportedDtype", format!("arrays cannot hold dtype {tag:?}: use {}", DType::SUPPORTED))
    })
}

/// Creates segment `name` holding a zeroed array.
#[pyfunction]
pub(crate) fn _create(name: &str, shape: Vec<usize>, dtype: &str) -> PyResult<SharedArray> {
    let a = DynArray::create(name, dtype_of(dtype)?, &shape).map_err(errors::core)?;
    Ok(SharedArray::wrap(a, false))
}

/// Creates a zeroed array under a fresh unique name.
#[pyfunction]
pub(crate) fn _create_unique(shape: Vec<usize>, dtype: &str) -> PyResult<SharedArray> {
    let a = DynArray::create_unique(dtype_of(dtype)?, &shape).map_err(errors::core)?;
    Ok(SharedArray::wrap(a, false))
}

/// Creates segment `name` holding a copy of `data` (a C-contiguous buffer
/// of `shape` elements of `dtype`), copied before the name appears.
#[pyfunction]
pub(crate) fn _create_from(
    py: Python<'_>,
    name: Option<&str>,
    shape: Vec<usize>,
    dtype: &str,
    data: &Bound<'_, PyAny>,
) -> PyResult<SharedArray> {
    let dt = dtype_of(dtype)?;
    let buffer = PyBuffer::<u8>::get(data)?;
    let need = shape.iter().product::<usize>() * dt.itemsize();
    if buffer.len_bytes() != need || !buffer.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "the data is {} bytes ({}C-contiguous); the array needs {need}",
            buffer.len_bytes(),
            if buffer.is_c_contiguous() { "" } else { "not " }
        )));
    }
    let mut copied = Ok(());
    let fill = |out: &mut [u8]| copied = buffer.copy_to_slice(py, out);
    let a = match name {
        Some(name) => DynArray::create_with(name, dt, &shape, fill),
        None => DynArray::create_unique_with(dt, &shape, fill),
    };
    let a = a.map_err(errors::core)?;
    copied?;
    Ok(SharedArray::wrap(a, false))
}

/// Opens segment `name`, whatever its dtype and rank.
#[pyfunction]
pub(crate) fn _open(name: &str) -> PyResult<SharedArray> {
    Ok(SharedArray::wrap(DynArray::open(name).map_err(errors::core)?, false))
}

/// Creates the `.npy` file `path` (which must not exist), zeroed.
#[pyfunction]
pub(crate) fn _create_file(path: &str, shape: Vec<usize>, dtype: &str) -> PyResult<SharedArray> {
    let a = DynArray::create_file(path, dtype_of(dtype)?, &shape).map_err(errors::core)?;
    Ok(SharedArray::wrap(a, true))
}

/// Opens the `.npy` file `path` read-write.
#[pyfunction]
pub(crate) fn _open_file(path: &str) -> PyResult<SharedArray> {
    Ok(SharedArray::wrap(DynArray::open_file(path).map_err(errors::core)?, true))
}
