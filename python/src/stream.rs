//! Streams for Python: `shmkit.Publisher` and `shmkit.Subscriber` over the
//! core's `DynPublisher` and `DynSubscriber`. A loan and a sample are
//! Python buffers (numpy reads them zero-copy: `numpy.asarray(sample)`),
//! whose exports are counted:
//!
//! - a sample keeps its slot held while it, or any view of it, lives, so a
//!   view never reads a slot the publisher reuses; `release()` with a view
//!   alive raises `BufferError` instead of letting go;
//! - a loan is published only with no view of it alive (`BufferError`
//!   otherwise), so no view writes into a published sample.

use std::ffi::CString;
use std::os::raw::c_int;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

use shmkit::stream::{
    DynPublisher, DynSubscriber, LoanTimeoutError, Policy, RecvTimeoutError, Taken, TryLoanError, TryRecvError,
};
use shmkit::DType;

use crate::{blocking, errors};

/// A slot's layout as a Python buffer: format, shape and strides, kept
/// alive as long as the loan or sample whose buffers point at them.
struct Layout {
    format: CString,
    itemsize: isize,
    shape: Box<[isize]>,
    strides: Box<[isize]>,
    len: isize,
}

impl Layout {
    fn new(dtype: DType, shape: &[usize]) -> Layout {
        let itemsize = dtype.itemsize() as isize;
        let shape: Box<[isize]> = shape.iter().map(|&n| n as isize).collect();
        let mut strides = vec![0isize; shape.len()];
        let mut acc = itemsize;
        for (s, n) in strides.iter_mut().zip(shape.iter()).rev() {
            *s = acc;
            acc *= n;
        }
        let format = CString::new(struct_code(dtype)).expect("no NUL in a format");
        Layout { format, itemsize, len: acc, shape, strides: strides.into() }
    }

    /// Fills `view` for `len` bytes at `data`, on behalf of `owner`, as
    /// `flags` asks (the rules of `PyBuffer_FillInfo`): the full layout
    /// for a request of format and shape, plain bytes otherwise; a
    /// Fortran-order request of a C-order array of 2 or more axes is refused.
    ///
    /// # Safety
    /// `view` is the valid `Py_buffer` Python passed to `__getbuffer__`;
    /// `data` points at `self.len` bytes that stay valid (and, unless
    /// `readonly`, writable) as long as `owner`, which owns `self`.
    unsafe fn fill(
        &self,
        view: *mut ffi::Py_buffer,
        owner: &Bound<'_, PyAny>,
        data: *mut u8,
        readonly: bool,
        flags: c_int,
    ) -> PyResult<()> {
        if flags & ffi::PyBUF_F_CONTIGUOUS == ffi::PyBUF_F_CONTIGUOUS && self.shape.len() > 1 {
            return Err(PyBufferError::new_err("a stream's samples are in C order, not Fortran order"));
        }
        let full = flags & ffi::PyBUF_FORMAT != 0 && flags & ffi::PyBUF_ND != 0;
        // SAFETY: `view` is valid (the caller's promise); every pointer
        // stored in it points into `self` or the slot, both alive as long
        // as `owner`, to which the view holds a strong reference (`obj`).
        unsafe {
            (*view).buf = data.cast();
            (*view).obj = owner.clone().into_ptr();
            (*view).len = self.len;
            (*view).readonly = c_int::from(readonly);
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = std::ptr::null_mut();
            if full {
                (*view).itemsize = self.itemsize;
                (*view).format = self.format.as_ptr().cast_mut();
                (*view).ndim = self.shape.len() as c_int;
                (*view).shape = self.shape.as_ptr().cast_mut();
                let strides = flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES;
                (*view).strides = if strides { self.strides.as_ptr().cast_mut() } else { std::ptr::null_mut() };
            } else {
                (*view).itemsize = 1;
                (*view).format = std::ptr::null_mut();
                (*view).ndim = 1;
                (*view).shape = std::ptr::null_mut();
                (*view).strides = std::ptr::null_mut();
            }
        }
        Ok(())
    }
}

/// The `struct` module's code of a dtype, little-endian.
fn struct_code(dtype: DType) -> &'static str {
    match dtype {
        DType::I8 => "<b",
        DType::I16 => "<h",
        DType::I32 => "<i",
        DType::I64 => "<q",
        DType::U8 => "<B",
        DType::U16 => "<H",
        DType::U32 => "<I",
        DType::U64 => "<Q",
        DType::F32 => "<f",
        DType::F64 => "<d",
        other => unreachable!("no struct code for {other:?}: add it with the dtype"),
    }
}

/// Loans, or samples, that count their buffer exports (lock order: the
/// exports, then a loan's lender).
#[derive(Default)]
struct Exports {
    live: usize,
    /// Published (a loan) or released (a sample): no more views.
    done: bool,
}

fn lock(m: &Mutex<Exports>) -> MutexGuard<'_, Exports> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The native half of `shmkit.Publisher`.
#[pyclass(frozen, module = "shmkit._shmkit", name = "_Publisher")]
pub(crate) struct PyPublisher {
    inner: Arc<DynPublisher>,
    layout: Arc<Layout>,
}

#[pymethods]
impl PyPublisher {
    /// Creates stream `name` (or takes over a dead publisher's).
    #[new]
    #[pyo3(signature = (name, shape, dtype, slots=8, policy="block", lag=1.0, subscribers=None, holds=2))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &str,
        shape: Vec<usize>,
        dtype: &str,
        slots: usize,
        policy: &str,
        lag: f64,
        subscribers: Option<usize>,
        holds: usize,
    ) -> PyResult<Self> {
        let dtype = DType::from_descr(dtype).ok_or_else(|| {
            errors::raise("UnsupportedDtype", format!("streams cannot hold dtype {dtype:?}: use {}", DType::SUPPORTED))
        })?;
        let policy = match policy {
            "block" => Policy::Block { lag: blocking::limit(Some(lag))?.unwrap_or(Duration::MAX) },
            "overwrite" => Policy::Overwrite,
            other => {
                return Err(errors::raise(
                    "InvalidArgument",
                    format!("policy is 'block' or 'overwrite', not {other:?}"),
                ))
            }
        };
        let mut b = DynPublisher::builder(name, &shape).slots(slots).policy(policy).holds(holds);
        if let Some(n) = subscribers {
            b = b.subscribers(n);
        }
        let inner = b.create_dyn(dtype).map_err(errors::core)?;
        let layout = Arc::new(Layout::new(dtype, &shape));
        Ok(PyPublisher { inner: Arc::new(inner), layout })
    }

    /// The stream's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// A free slot to write the next sample in, waiting at most `timeout`
    /// seconds (`shmkit.Timeout`); `block=False`: `shmkit.Full` if none now.
    #[pyo3(signature = (block=true, timeout=None))]
    fn loan(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<PyLoan> {
        let k = if !block {
            self.inner.try_loan().map_err(|e| match e {
                TryLoanError::Full => errors::raise("Full", e.to_string()),
                TryLoanError::Inherited => errors::raise("Inherited", e.to_string()),
                _ => errors::raise("LimitReached", e.to_string()),
            })?
        } else {
            let p = &self.inner;
            let got = blocking::wait(py, blocking::limit(timeout)?, |slice| match p.loan_timeout(slice) {
                Err(LoanTimeoutError::Timeout) => None,
                other => Some(other),
            })?;
            match got {
                Some(Ok(k)) => k,
                Some(Err(LoanTimeoutError::Inherited)) => {
                    return Err(errors::raise("Inherited", "this publisher was inherited across fork"))
                }
                Some(Err(e)) => return Err(errors::raise("LimitReached", e.to_string())),
                None => return Err(errors::raise("Timeout", "no slot was freed in time")),
            }
        };
        let publisher = Mutex::new(Some(self.inner.clone()));
        Ok(PyLoan { publisher, layout: self.layout.clone(), slot: k, exports: Mutex::default() })
    }

    /// Publishes `loan` as the newest sample; its sequence number. No view
    /// of the loan may be alive (`BufferError`): it would write into a
    /// published sample.
    fn publish(&self, loan: &Bound<'_, PyLoan>) -> PyResult<u64> {
        let loan = loan.get();
        // Decided under the loan's locks, raised after: building an
        // exception may run Python, which may release a view of this loan.
        let outcome = {
            let mut ex = lock(&loan.exports);
            let mut lender = loan.lender();
            match lender.as_ref() {
                None => Err("this loan was published or discarded already"),
                Some(p) if !Arc::ptr_eq(p, &self.inner) => Err("the loan is another publisher's"),
                Some(_) if ex.live > 0 => Ok(None),
                Some(_) => {
                    let published = self.inner.publish(loan.slot);
                    if published.is_ok() {
                        ex.done = true;
                        // A published loan keeps nothing: the stream ends when
                        // its publisher is closed, whatever loans are left.
                        *lender = None;
                    }
                    Ok(Some(published))
                }
            }
        };
        match outcome {
            Err(why) => Err(errors::raise("InvalidArgument", why)),
            Ok(None) => Err(PyBufferError::new_err(
                "a view of this loan is still alive: write through the loan (loan[...] = x), or delete the view, \
                 before publishing",
            )),
            Ok(Some(published)) => published.map_err(errors::core),
        }
    }
}

/// A lent slot: a writable Python buffer of one sample.
#[pyclass(frozen, module = "shmkit._shmkit", name = "_Loan")]
pub(crate) struct PyLoan {
    /// Its publisher, until it is published.
    publisher: Mutex<Option<Arc<DynPublisher>>>,
    layout: Arc<Layout>,
    slot: usize,
    exports: Mutex<Exports>,
}

#[pymethods]
impl PyLoan {
    /// Gives the slot back unpublished; `BufferError` while a view of it
    /// lives. Harmless twice.
    fn discard(&self) -> PyResult<()> {
        let taken = {
            let ex = lock(&self.exports);
            if ex.live > 0 {
                None
            } else {
                Some(self.lender().take())
            }
        };
        match taken {
            None => Err(PyBufferError::new_err("a view of this loan is still alive: delete it first")),
            Some(p) => {
                if let Some(p) = p {
                    p.give_back(self.slot);
                }
                Ok(())
            }
        }
    }

    /// # Safety
    /// Called by Python's buffer protocol with a valid `view` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let me = slf.get();
        let mut ex = lock(&me.exports);
        let lender = me.lender();
        let Some(publisher) = lender.as_ref().filter(|_| !ex.done) else {
            return Err(PyBufferError::new_err("this loan was published or discarded: loan another slot"));
        };
        if publisher.check_process().is_err() {
            return Err(PyBufferError::new_err("this loan was inherited across fork: it is the parent's"));
        }
        // SAFETY: `view` is valid (Python's call); the slot's `len` bytes lie
        // in the publisher's mapping, which the loan's `Arc` keeps alive
        // until the loan is published, which `publish` refuses while this
        // export lives (and the view keeps the loan); the slot is on loan to
        // this publisher (claimed: no subscriber holds it), so it is writable.
        unsafe { me.layout.fill(view, slf.as_any(), publisher.slot_ptr(me.slot), false, flags)? };
        ex.live += 1;
        Ok(())
    }

    /// # Safety
    /// Called by Python's buffer protocol for a view this loan filled.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        let mut ex = lock(&self.exports);
        ex.live = ex.live.saturating_sub(1);
    }
}

impl PyLoan {
    fn lender(&self) -> MutexGuard<'_, Option<Arc<DynPublisher>>> {
        self.publisher.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for PyLoan {
    /// An unpublished loan gives its slot back.
    fn drop(&mut self) {
        if let Some(p) = self.lender().take() {
            p.give_back(self.slot);
        }
    }
}

/// The native half of `shmkit.Subscriber`.
#[pyclass(frozen, module = "shmkit._shmkit", name = "_Subscriber")]
pub(crate) struct PySubscriber {
    inner: Arc<DynSubscriber>,
    layout: Arc<Layout>,
}

#[pymethods]
impl PySubscriber {
    /// Subscribes to stream `name`, waiting up to `timeout` seconds for it
    /// to be created (`None`: not at all).
    #[new]
    #[pyo3(signature = (name, timeout=None))]
    fn new(py: Python<'_>, name: &str, timeout: Option<f64>) -> PyResult<Self> {
        let inner = match blocking::limit(timeout)? {
            None => DynSubscriber::open(name).map_err(errors::core)?,
            Some(limit) => {
                let got = blocking::wait(py, Some(limit), |slice| match DynSubscriber::open_timeout(name, slice) {
                    Err(shmkit::Error::NotFound { .. }) => None,
                    other => Some(other),
                })?;
                match got {
                    Some(r) => r.map_err(errors::core)?,
                    None => return Err(errors::raise("NotFound", format!("no stream '{name}' appeared in time"))),
                }
            }
        };
        let layout = Arc::new(Layout::new(inner.dtype(), inner.shape()));
        Ok(PySubscriber { inner: Arc::new(inner), layout })
    }

    /// The stream's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// A sample's shape.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.inner.shape().to_vec()
    }

    /// The samples' numpy dtype.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().descr()
    }

    /// The next sample in order, waiting at most `timeout` seconds
    /// (`shmkit.Empty`); `block=False`: `shmkit.Empty` if none now.
    #[pyo3(signature = (block=true, timeout=None))]
    fn next(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<PySample> {
        let taken = if !block {
            self.inner.try_next().map_err(untimed)?
        } else {
            let s = &self.inner;
            let got = blocking::wait(py, blocking::limit(timeout)?, |slice| match s.next_timeout(slice) {
                Err(RecvTimeoutError::Timeout) => None,
                other => Some(other),
            })?;
            got.unwrap_or(Err(RecvTimeoutError::Timeout)).map_err(timed)?
        };
        Ok(self.sample(taken))
    }

    /// The newest sample (perhaps one seen before: `seq` tells), waiting
    /// at most `timeout` seconds for a first one (`shmkit.Empty`).
    #[pyo3(signature = (timeout=None))]
    fn latest(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PySample> {
        let s = &self.inner;
        let got = blocking::wait(py, blocking::limit(timeout)?, |slice| match s.latest_timeout(slice) {
            Err(RecvTimeoutError::Timeout) => None,
            other => Some(other),
        })?;
        let taken = got.unwrap_or(Err(RecvTimeoutError::Timeout)).map_err(timed)?;
        Ok(self.sample(taken))
    }
}

impl PySubscriber {
    fn sample(&self, taken: Taken) -> PySample {
        PySample { sub: self.inner.clone(), layout: self.layout.clone(), taken, exports: Mutex::default() }
    }
}

/// Why a read gave no sample, as its Python exception: the end of the
/// stream is `shmkit.ShutDown`, no sample in time `shmkit.Empty`.
enum Why {
    Empty,
    Ended,
    PublisherDied,
    Dropped,
    TooManySamples,
    Inherited,
}

fn raise(why: Why, text: String) -> PyErr {
    let class = match why {
        Why::Empty => "Empty",
        Why::Ended => "ShutDown",
        Why::PublisherDied => "PublisherDied",
        Why::Dropped => "Dropped",
        Why::TooManySamples => {
            return errors::raise(
                "LimitReached",
                format!(
                    "{text}: a sample, or a numpy view of one, is still alive and keeps its slot; release it, \
                     delete the view, or copy what you keep (numpy.array(view))"
                ),
            )
        }
        Why::Inherited => "Inherited",
    };
    errors::raise(class, text)
}

fn timed(e: RecvTimeoutError) -> PyErr {
    let why = match e {
        RecvTimeoutError::Timeout => Why::Empty,
        RecvTimeoutError::Ended => Why::Ended,
        RecvTimeoutError::PublisherDied => Why::PublisherDied,
        RecvTimeoutError::Dropped => Why::Dropped,
        RecvTimeoutError::TooManySamples => Why::TooManySamples,
        RecvTimeoutError::Inherited => Why::Inherited,
    };
    raise(why, e.to_string())
}

fn untimed(e: TryRecvError) -> PyErr {
    let why = match e {
        TryRecvError::Empty => Why::Empty,
        TryRecvError::Ended => Why::Ended,
        TryRecvError::PublisherDied => Why::PublisherDied,
        TryRecvError::Dropped => Why::Dropped,
        TryRecvError::TooManySamples => Why::TooManySamples,
        TryRecvError::Inherited => Why::Inherited,
    };
    raise(why, e.to_string())
}

/// A taken sample: a read-only Python buffer of its slot.
#[pyclass(frozen, module = "shmkit._shmkit", name = "_Sample")]
pub(crate) struct PySample {
    sub: Arc<DynSubscriber>,
    layout: Arc<Layout>,
    taken: Taken,
    exports: Mutex<Exports>,
}

#[pymethods]
impl PySample {
    /// Its sequence number.
    #[getter]
    fn seq(&self) -> u64 {
        self.taken.seq
    }

    /// Samples skipped before it.
    #[getter]
    fn missed(&self) -> u64 {
        self.taken.missed
    }

    /// Lets go of the slot now; `BufferError` while a view of it is alive
    /// (copy what you keep: `numpy.array(view)`). Harmless twice.
    fn release(&self) -> PyResult<()> {
        let mut ex = lock(&self.exports);
        if ex.live > 0 {
            return Err(PyBufferError::new_err(
                "a view of this sample is still alive: copy what you keep (numpy.array(view)) or delete the view \
                 before releasing",
            ));
        }
        if !ex.done {
            ex.done = true;
            self.sub.release(self.taken.hold);
        }
        Ok(())
    }

    /// # Safety
    /// Called by Python's buffer protocol with a valid `view` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if flags & ffi::PyBUF_WRITABLE != 0 {
            return Err(PyBufferError::new_err("a sample is read-only: copy it to change it"));
        }
        let me = slf.get();
        let mut ex = lock(&me.exports);
        if ex.done {
            return Err(PyBufferError::new_err("this sample was released: take another"));
        }
        if me.sub.check_process().is_err() {
            return Err(PyBufferError::new_err("this sample was inherited across fork: its hold is the parent's"));
        }
        // SAFETY: `view` is valid (Python's call); the slot's `len` bytes lie
        // in the subscriber's mapping, which the sample's `Arc` keeps alive;
        // the sample's hold keeps the publisher from writing the slot until
        // it is released, which `release` refuses while this export lives
        // (and `Drop` cannot run while the view keeps the sample).
        unsafe { me.layout.fill(view, slf.as_any(), me.sub.slot_ptr(me.taken.slot).cast_mut(), true, flags)? };
        ex.live += 1;
        Ok(())
    }

    /// # Safety
    /// Called by Python's buffer protocol for a view this sample filled.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        let mut ex = lock(&self.exports);
        ex.live = ex.live.saturating_sub(1);
    }
}

impl Drop for PySample {
    /// Lets go of the slot (no view can be left: each keeps the sample).
    fn drop(&mut self) {
        if !lock(&self.exports).done {
            self.sub.release(self.taken.hold);
        }
    }
}
