//! `Dict` over [`DynMap`] and `List` over [`DynVec`]: Python's
//! `Manager().dict()` and `.list()` without a server, keys and values of
//! numpy dtypes. The public classes are Python subclasses (in `shmkit`)
//! that add the `collections.abc` mixins and the `create`/`open`
//! constructors; these are their native bases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyIndexError, PyKeyError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use shmkit::collections::{DynMap, DynVec, Item, MapError};

use crate::codec::{Buf, Codec};
use crate::handle::{handle_methods, Handle};
use crate::{blocking, errors};

/// A hash map in a named segment, keys and values of numpy dtypes (the
/// native base of `shmkit.Dict`).
#[pyclass(subclass, frozen, weakref, module = "shmkit._shmkit", name = "_Dict")]
pub(crate) struct Dict {
    map: Handle<DynMap>,
    key: Codec,
    value: Codec,
    /// Most a call waits for a stripe held by another process (`None`: as
    /// long as it takes).
    lock_timeout: Option<Duration>,
}

handle_methods!(closing Dict, map, {
    #[new]
    #[pyo3(signature = (op, name=None, key_dtype=None, value_dtype=None, capacity=0, lock_timeout=None))]
    fn new(
        py: Python<'_>,
        op: &str,
        name: Option<&str>,
        key_dtype: Option<&str>,
        value_dtype: Option<&str>,
        capacity: usize,
        lock_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let lock_timeout = blocking::limit(lock_timeout)?;
        let types = key_dtype.zip(value_dtype);
        let map = match (op, name, types) {
            ("create", Some(n), Some((k, v))) => DynMap::create(n, k, v, capacity),
            ("create_unique", _, Some((k, v))) => DynMap::create_unique(k, v, capacity),
            ("open", Some(n), _) => DynMap::open(n),
            _ => return Err(PyValueError::new_err("use Dict.create(name, key_dtype, value_dtype, capacity), Dict.create_unique(...) or Dict.open(name)")),
        }
        .map_err(errors::core)?
        .with_lock_timeout(Duration::ZERO); // try only: see `run`
        let key = Codec::of(py, map.key_dtype(), map.key_size())?;
        let value = Codec::of(py, map.value_dtype(), map.value_size())?;
        Ok(Dict { map: Handle::of(map, "Dict"), key, value, lock_timeout })
    }

    /// The keys' numpy dtype string.
    #[getter]
    fn key_dtype(&self) -> PyResult<String> {
        Ok(self.map.get()?.key_dtype().to_owned())
    }

    /// The values' numpy dtype string.
    #[getter]
    fn value_dtype(&self) -> PyResult<String> {
        Ok(self.map.get()?.value_dtype().to_owned())
    }

    /// The capacity asked for at create.
    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        Ok(self.map.get()?.capacity())
    }

    /// Repairs of stripes whose writer died mid-operation, over the map's life.
    #[getter]
    fn recoveries(&self) -> PyResult<u64> {
        Ok(self.map.get()?.recoveries())
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (map, k, mut out) = self.keyed(key)?;
        match self.run(py, &map, |m| m.get_into(&k, &mut out))? {
            true => self.value.decode(py, &out),
            false => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __setitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let (map, k, mut v) = self.keyed(key)?;
        self.value.encode(value, &mut v)?;
        let mut old = Buf::zeroed(v.len());
        self.run(py, &map, |m| m.insert_into(&k, &v, &mut old)).map(drop)
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let (map, k, mut out) = self.keyed(key)?;
        match self.run(py, &map, |m| m.remove_into(&k, &mut out))? {
            true => Ok(()),
            false => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let (map, k, mut out) = match self.keyed(key) {
            Err(e) if not_a_key(py, &e) => return Ok(false),
            other => other?,
        };
        self.run(py, &map, |m| m.get_into(&k, &mut out))
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.map.get()?.len())
    }

    /// The value of `key`, or `default`.
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (map, k, mut out) = match self.keyed(key) {
            Err(e) if not_a_key(py, &e) => return Ok(default),
            other => other?,
        };
        match self.run(py, &map, |m| m.get_into(&k, &mut out))? {
            true => self.value.decode(py, &out).map(Some),
            false => Ok(default),
        }
    }

    /// Removes `key` and returns its value, atomically; `default` if it
    /// is absent (`KeyError` if no default is given).
    #[pyo3(signature = (key, *default))]
    fn pop<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>, default: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        let (map, k, mut out) = self.keyed(key)?;
        match (self.run(py, &map, |m| m.remove_into(&k, &mut out))?, default.get_item(0)) {
            (true, _) => self.value.decode(py, &out),
            (false, Ok(d)) => Ok(d),
            (false, Err(_)) => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// Atomic read-modify-write of one entry: `fn(value)` gets the current
    /// value (`None` if absent) and returns the new one (`None` removes
    /// it), all under the entry's stripe lock; returns the new value. (Not
    /// `update`: a mapping's `update` merges another mapping.) `fn` must be
    /// quick and must not use this map; if it raises, nothing changes.
    fn apply<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>, func: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (map, k, _) = self.keyed(key)?;
        let mut failure = None;
        let mut new_value = None;
        self.run(py, &map, |m| {
            m.modify(&k, |current, out| {
                let result = current.map(|c| self.value.decode(py, c)).transpose().and_then(|old| {
                    let new = func.call1((old,))?;
                    if new.is_none() {
                        return Ok(None);
                    }
                    self.value.encode(&new, out)?;
                    Ok(Some(new))
                });
                match result {
                    Ok(new) => {
                        let keep = new.is_some();
                        new_value = new;
                        keep
                    }
                    Err(e) => {
                        failure = Some(e);
                        // Leave it as it was.
                        current.inspect(|c| out.copy_from_slice(c)).is_some()
                    }
                }
            })
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(new_value.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    /// Every `(key, value)`, as one consistent snapshot (a list).
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.snapshot(py, |k, v| Ok(PyTuple::new(py, [k, v])?.into_any()))
    }

    /// Every key, as one consistent snapshot (a list).
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.snapshot(py, |k, _| Ok(k))
    }

    /// Every value, as one consistent snapshot (a list).
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.snapshot(py, |_, v| Ok(v))
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.keys(py)?.try_iter().map(Bound::into_any)
    }

    fn __repr__(&self) -> String {
        match self.map.get() {
            Ok(m) => format!(
                "shmkit.Dict({:?}, {} -> {}, len={}, capacity={})",
                self.map.name(),
                m.key_dtype(),
                m.value_dtype(),
                m.len(),
                m.capacity()
            ),
            Err(_) => format!("shmkit.Dict({:?}, closed)", self.map.name()),
        }
    }
});

impl Dict {
    /// The map, `key`'s bytes, and a zeroed buffer for one value: what
    /// every keyed operation starts with (one `get` of the handle, no
    /// allocation for keys and values of up to `Buf`'s inline size).
    fn keyed(&self, key: &Bound<'_, PyAny>) -> PyResult<(Arc<DynMap>, Buf, Buf)> {
        let map = self.map.get()?;
        let mut k = Buf::zeroed(map.key_size());
        self.key.encode(key, &mut k)?;
        let v = Buf::zeroed(map.value_size());
        Ok((map, k, v))
    }

    /// Runs `op`, which only tries a stripe's lock (the handle's lock
    /// timeout is zero): a busy stripe is waited for with the GIL released
    /// (in slices, Python's signal handlers running between them), then
    /// `op` runs again, until the handle's lock timeout. Never waiting
    /// with the GIL held matters: the holder may be a thread of this
    /// process inside `apply`, which needs the GIL to finish.
    fn run<T>(&self, py: Python<'_>, map: &DynMap, mut op: impl FnMut(&DynMap) -> Result<T, MapError>) -> PyResult<T> {
        let deadline = self.lock_timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            match op(map) {
                Err(MapError::LockTimeout { stripe, .. }) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left == Some(Duration::ZERO) {
                        let why = format!("a stripe of Dict {:?} stayed locked past the lock timeout", self.map.name());
                        return Err(errors::raise("Timeout", why));
                    }
                    let slice = left.map_or(blocking::SLICE, |l| l.min(blocking::SLICE));
                    py.detach(|| map.wait_for_stripe(stripe, slice)).map_err(errors::map)?;
                    py.check_signals()?;
                }
                other => return other.map_err(errors::map),
            }
        }
    }

    /// Every entry, as one consistent snapshot. Taken with the GIL
    /// released (it touches no Python object), in slices: stripes taken
    /// stay held while later ones are waited for (`for_each_timeout`),
    /// so busy writers cannot starve it; Python's signal handlers run
    /// between slices.
    fn snapshot<'py>(
        &self,
        py: Python<'py>,
        mut each: impl FnMut(Bound<'py, PyAny>, Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let map = self.map.get()?;
        let deadline = self.lock_timeout.and_then(|t| Instant::now().checked_add(t));
        let raw = loop {
            let slice =
                deadline.map_or(blocking::SLICE, |d| d.saturating_duration_since(Instant::now()).min(blocking::SLICE));
            let mut raw: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            match py.detach(|| map.for_each_timeout(slice, |k, v| raw.push((k.to_vec(), v.to_vec())))) {
                Ok(()) => break raw,
                Err(MapError::LockTimeout { .. }) => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let why = format!("a stripe of Dict {:?} stayed locked past the lock timeout", self.map.name());
                        return Err(errors::raise("Timeout", why));
                    }
                }
                Err(e) => return Err(errors::map(e)),
            }
        };
        let items = raw.iter().map(|(k, v)| each(self.key.decode(py, k)?, self.value.decode(py, v)?));
        PyList::new(py, items.collect::<PyResult<Vec<_>>>()?)
    }
}

/// True if encoding a key failed because it cannot be a key of the map's
/// dtype (so it is absent), not for another reason (Ctrl-C, no memory,
/// a closed handle).
fn not_a_key(py: Python<'_>, e: &PyErr) -> bool {
    let ours = errors::class(py, "Error").is_ok_and(|c| e.is_instance(py, c.as_any())); // shmkit.Closed is a ValueError
    let conversion = e.is_instance_of::<PyTypeError>(py)
        || e.is_instance_of::<PyValueError>(py)
        || e.is_instance_of::<PyOverflowError>(py);
    conversion && !ours
}

/// An append-only list in a named segment, elements of a numpy dtype
/// (the native base of `shmkit.List`).
#[pyclass(subclass, frozen, weakref, module = "shmkit._shmkit", name = "_List")]
pub(crate) struct List {
    list: Handle<DynVec>,
    codec: Codec,
}

handle_methods!(closing List, list, {
    #[new]
    #[pyo3(signature = (op, name=None, dtype=None, capacity=0))]
    fn new(py: Python<'_>, op: &str, name: Option<&str>, dtype: Option<&str>, capacity: usize) -> PyResult<Self> {
        let list = match (op, name, dtype) {
            ("create", Some(n), Some(d)) => DynVec::create(n, d, capacity),
            ("create_unique", _, Some(d)) => DynVec::create_unique(d, capacity),
            ("open", Some(n), _) => DynVec::open(n),
            _ => return Err(PyValueError::new_err("use List.create(name, dtype, capacity), List.create_unique(...) or List.open(name)")),
        }
        .map_err(errors::core)?;
        let codec = Codec::of(py, list.dtype(), list.item_size())?;
        Ok(List { list: Handle::of(list, "List"), codec })
    }

    /// The elements' numpy dtype string.
    #[getter]
    fn dtype(&self) -> PyResult<String> {
        Ok(self.list.get()?.dtype().to_owned())
    }

    /// Most elements the list holds.
    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        Ok(self.list.get()?.capacity())
    }

    /// Appends `value` (lock-free, from any number of processes at once).
    fn append(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let list = self.list.get()?;
        let mut bytes = Buf::zeroed(list.item_size());
        self.codec.encode(value, &mut bytes)?;
        list.push(&bytes).map(drop).map_err(errors::push)
    }

    /// Appends every value of `values`.
    fn extend(&self, values: &Bound<'_, PyAny>) -> PyResult<()> {
        values.try_iter()?.try_for_each(|v| self.append(&v?))
    }

    /// Slots handed out: complete elements, pushes under way, and holes a
    /// dead pusher left (see `item`).
    fn __len__(&self) -> PyResult<usize> {
        Ok(self.list.get()?.len())
    }

    /// Element `index` (negative counts from the end). A slot whose push is
    /// under way is waited for (Ctrl-C ends the wait); a hole a dead pusher
    /// left raises `shmkit.Hole`; past the end, `IndexError`.
    fn __getitem__<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyAny>> {
        let list = self.list.get()?;
        let len = list.len() as isize;
        let i = if index < 0 { index + len } else { index };
        if i < 0 || i >= len {
            return Err(PyIndexError::new_err("List index out of range"));
        }
        let mut out = Buf::zeroed(list.item_size());
        let found = blocking::wait(py, None, |slice| {
            let start = Instant::now();
            loop {
                match list.item_into(i as usize, &mut out) {
                    Item::Pending if start.elapsed() < slice => std::thread::sleep(Duration::from_micros(100)),
                    Item::Pending => return None,
                    other => return Some(other),
                }
            }
        })?;
        match found {
            Some(Item::Ready(())) => self.codec.decode(py, &out),
            Some(Item::Hole) => Err(errors::raise("Hole", format!("slot {i} of List {:?} is a hole: its pusher died mid-append", self.list.name()))),
            _ => Err(PyIndexError::new_err("List index out of range")),
        }
    }

    /// What slot `index` holds now, without waiting: `("ready", value)`,
    /// `("pending", None)`, `("hole", None)` or `("vacant", None)`.
    fn item<'py>(&self, py: Python<'py>, index: usize) -> PyResult<(&'static str, Bound<'py, PyAny>)> {
        let list = self.list.get()?;
        let mut out = vec![0; list.item_size()];
        Ok(match list.item_into(index, &mut out) {
            Item::Ready(()) => ("ready", self.codec.decode(py, &out)?),
            Item::Pending => ("pending", py.None().into_bound(py)),
            Item::Hole => ("hole", py.None().into_bound(py)),
            Item::Vacant => ("vacant", py.None().into_bound(py)),
        })
    }

    /// The complete elements, in order (pushes under way and holes are
    /// skipped), as a list.
    fn to_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = self.list.get()?;
        let mut out = vec![0; list.item_size()];
        let mut values = Vec::new();
        for i in 0..list.len() {
            if list.item_into(i, &mut out) == Item::Ready(()) {
                values.push(self.codec.decode(py, &out)?);
            }
        }
        PyList::new(py, values)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.to_list(py)?.try_iter().map(Bound::into_any)
    }

    fn __repr__(&self) -> String {
        match self.list.get() {
            Ok(l) => format!("shmkit.List({:?}, {}, len={}, capacity={})", self.list.name(), l.dtype(), l.len(), l.capacity()),
            Err(_) => format!("shmkit.List({:?}, closed)", self.list.name()),
        }
    }
});
