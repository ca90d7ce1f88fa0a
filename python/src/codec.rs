//! Python values as the bytes of a numpy dtype, and back: what a `Dict`'s
//! keys and values, a `List`'s elements and a `Queue`'s records are in the
//! segment. Plain numbers, `bool`, `bytes` (`'S<n>'`) and `str`
//! (`'U<n>'`) are converted here; every other dtype (structures,
//! sub-arrays, `float16`, ...) goes through numpy.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// How one dtype's values are converted.
pub(crate) enum Codec {
    Int {
        size: usize,
        signed: bool,
    },
    Float {
        size: usize,
    },
    Complex {
        size: usize,
    },
    Bool,
    Bytes {
        n: usize,
    },
    Text {
        chars: usize,
    },
    /// Through numpy: `numpy.dtype(tag)`.
    Numpy {
        dtype: Py<PyAny>,
        size: usize,
    },
}

impl Codec {
    /// The codec of canonical dtype `tag` of `size` bytes.
    pub(crate) fn of(py: Python<'_>, tag: &str, size: usize) -> PyResult<Codec> {
        let body = tag.trim_start_matches(['<', '|']);
        let (kind, n) = body.split_at(body.find(|c: char| c.is_ascii_digit()).unwrap_or(body.len()));
        let n: Option<usize> = n.parse().ok();
        Ok(match (kind, n) {
            ("i", Some(s @ (1 | 2 | 4 | 8))) => Codec::Int { size: s, signed: true },
            ("u", Some(s @ (1 | 2 | 4 | 8))) => Codec::Int { size: s, signed: false },
            ("f", Some(s @ (4 | 8))) => Codec::Float { size: s },
            ("c", Some(s @ (8 | 16))) => Codec::Complex { size: s },
            ("b", Some(1)) => Codec::Bool,
            ("S", Some(n)) => Codec::Bytes { n },
            ("U", Some(chars)) => Codec::Text { chars },
            _ => Codec::Numpy { dtype: numpy_dtype(py, tag)?.unbind(), size },
        })
    }

    /// Writes `value` into `out` (one value's bytes).
    pub(crate) fn encode(&self, value: &Bound<'_, PyAny>, out: &mut [u8]) -> PyResult<()> {
        match *self {
            Codec::Int { size, signed } => int(value, size, signed, out),
            Codec::Float { size: 4 } => {
                out.copy_from_slice(&(value.extract::<f64>()? as f32).to_le_bytes());
                Ok(())
            }
            Codec::Float { .. } => {
                out.copy_from_slice(&value.extract::<f64>()?.to_le_bytes());
                Ok(())
            }
            Codec::Complex { size } => {
                let (re, im): (f64, f64) = (value.getattr("real")?.extract()?, value.getattr("imag")?.extract()?);
                match size {
                    8 => out.copy_from_slice(&[(re as f32).to_le_bytes(), (im as f32).to_le_bytes()].concat()),
                    _ => out.copy_from_slice(&[re.to_le_bytes(), im.to_le_bytes()].concat()),
                }
                Ok(())
            }
            Codec::Bool => {
                out[0] = u8::from(value.extract::<bool>()?);
                Ok(())
            }
            Codec::Bytes { n } => {
                let too_long = |len: usize| format!("{len} bytes do not fit 'S{n}'");
                if let Ok(b) = value.cast::<PyBytes>() {
                    return fill(out, b.as_bytes(), || too_long(b.as_bytes().len()));
                }
                if let Ok(s) = value.cast::<PyString>() {
                    let text = s.to_str()?;
                    return fill(out, text.as_bytes(), || too_long(text.len()));
                }
                let bytes: Vec<u8> = value.extract().map_err(|_| {
                    PyTypeError::new_err(format!("a 'S{n}' value is bytes (or str), not {}", type_name(value)))
                })?;
                fill(out, &bytes, || too_long(bytes.len()))
            }
            Codec::Text { chars } => {
                let text = value.cast::<PyString>().map_err(|_| {
                    PyTypeError::new_err(format!("a 'U{chars}' value is str, not {}", type_name(value)))
                })?;
                ucs4(text.to_str()?, out, chars)
            }
            Codec::Numpy { ref dtype, size } => {
                // A 0-d array assigned the value: numpy's own conversion,
                // for records and sub-arrays as for scalars.
                let py = value.py();
                let array = py.import("numpy")?.call_method1("zeros", ((), dtype.bind(py)))?;
                array.set_item(py.Ellipsis(), value)?;
                let bytes: Vec<u8> = array.call_method0("tobytes")?.extract()?;
                if bytes.len() != size {
                    return Err(PyValueError::new_err(format!(
                        "one value of dtype {} takes {size} bytes; this one took {}",
                        dtype.bind(py).str()?,
                        bytes.len()
                    )));
                }
                out.copy_from_slice(&bytes);
                Ok(())
            }
        }
    }

    /// The value `bytes` (one value's) hold.
    pub(crate) fn decode<'py>(&self, py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let arr = |n: usize| -> [u8; 8] {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&bytes[..n]);
            b
        };
        Ok(match *self {
            Codec::Int { size, signed: true } => {
                let shift = 64 - 8 * size as u32;
                ((i64::from_le_bytes(arr(size)) << shift) >> shift).into_pyobject(py)?.into_any()
            }
            Codec::Int { size, signed: false } => u64::from_le_bytes(arr(size)).into_pyobject(py)?.into_any(),
            Codec::Float { size: 4 } => {
                f64::from(f32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"))).into_pyobject(py)?.into_any()
            }
            Codec::Float { .. } => f64::from_le_bytes(arr(8)).into_pyobject(py)?.into_any(),
            Codec::Complex { size } => {
                let half = size / 2;
                let part = |b: &[u8]| match half {
                    4 => f64::from(f32::from_le_bytes(b.try_into().expect("4 bytes"))),
                    _ => f64::from_le_bytes(b.try_into().expect("8 bytes")),
                };
                let builtins = py.import("builtins")?;
                builtins.getattr("complex")?.call1((part(&bytes[..half]), part(&bytes[half..size])))?
            }
            Codec::Bool => (bytes[0] != 0).into_pyobject(py)?.to_owned().into_any(),
            Codec::Bytes { .. } => {
                let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                PyBytes::new(py, &bytes[..end]).into_any()
            }
            Codec::Text { .. } => {
                let chars = bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")));
                let text: String = chars.take_while(|&c| c != 0).filter_map(char::from_u32).collect();
                PyString::new(py, &text).into_any()
            }
            Codec::Numpy { ref dtype, .. } => {
                let numpy = py.import("numpy")?;
                let array = numpy.call_method1("frombuffer", (PyBytes::new(py, bytes), dtype.bind(py)))?;
                array.get_item(0)?
            }
        })
    }
}

/// `numpy.dtype` of a canonical tag (a structure's tag is a Python list
/// literal, which `numpy.dtype` takes as a list, not as a string).
pub(crate) fn numpy_dtype<'py>(py: Python<'py>, tag: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("shmkit._dtypes")?.call_method1("dtype", (tag,))
}

/// A little-endian integer of `size` bytes, range-checked.
fn int(value: &Bound<'_, PyAny>, size: usize, signed: bool, out: &mut [u8]) -> PyResult<()> {
    let bits = 8 * size as u32;
    let n: i128 = match value.extract::<i64>() {
        Ok(n) => n.into(),
        Err(_) => match value.extract::<i128>() {
            Ok(n) => n,
            Err(_) if value.call_method0("__index__").is_ok() => {
                return Err(PyOverflowError::new_err("the integer is out of range for its dtype"));
            }
            Err(_) => {
                return Err(PyTypeError::new_err(format!("an integer dtype holds int, not {}", type_name(value))));
            }
        },
    };
    let (lo, hi) = match signed {
        true => (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1),
        false => (0, (1i128 << bits) - 1),
    };
    if n < lo || n > hi {
        let kind = if signed { "int" } else { "uint" };
        return Err(PyOverflowError::new_err(format!("{n} is out of range for {kind}{bits}")));
    }
    out.copy_from_slice(&n.to_le_bytes()[..size]);
    Ok(())
}

/// `text` as UTF-32LE then zeros into `out` (`chars` characters' room),
/// written in place: no allocation on the way.
fn ucs4(text: &str, out: &mut [u8], chars: usize) -> PyResult<()> {
    let mut cells = out.chunks_exact_mut(4);
    for c in text.chars() {
        let Some(cell) = cells.next() else {
            let why = format!("{} characters do not fit 'U{chars}'", text.chars().count());
            return Err(PyValueError::new_err(why));
        };
        cell.copy_from_slice(&(c as u32).to_le_bytes());
    }
    cells.for_each(|cell| cell.fill(0));
    Ok(())
}

/// One value's bytes: inline up to `Buf::INLINE` bytes (the keys and
/// values of most maps, lists and queues), else on the heap. Saves the
/// allocations a `Vec` would cost on every call.
pub(crate) enum Buf {
    Inline([u8; Buf::INLINE], usize),
    Heap(Vec<u8>),
}

impl Buf {
    const INLINE: usize = 128;

    /// `n` zero bytes.
    pub(crate) fn zeroed(n: usize) -> Buf {
        match n <= Self::INLINE {
            true => Buf::Inline([0; Self::INLINE], n),
            false => Buf::Heap(vec![0; n]),
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Buf::Inline(b, n) => &b[..*n],
            Buf::Heap(v) => v,
        }
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Buf::Inline(b, n) => &mut b[..*n],
            Buf::Heap(v) => v,
        }
    }
}

/// `bytes` then zeros into `out`; `ValueError` (with `why`) if too long.
fn fill(out: &mut [u8], bytes: &[u8], why: impl FnOnce() -> String) -> PyResult<()> {
    if bytes.len() > out.len() {
        return Err(PyValueError::new_err(why()));
    }
    out[..bytes.len()].copy_from_slice(bytes);
    out[bytes.len()..].fill(0);
    Ok(())
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value.get_type().name().map_or_else(|_| "?".into(), |n| n.to_string())
}
