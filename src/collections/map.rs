//! `ShmMap<K, V>`: a hash map of records in a named segment, the typed
//! face of [`DynMap`](super::DynMap) (which holds the engine: striped
//! robust locks and a per-stripe journal, so a writer that dies
//! mid-operation is undone by whoever takes its stripe next).

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::dyn_map::DynMap;
use super::error::MapError;
use crate::npy::record::dtype_of;
use crate::{Record, Result};

/// A hash map of `Pod` keys and values in a named segment, opened by name
/// from any process: Python's `Manager().dict()` without a server.
///
/// Keys and values have fixed sizes (use [`FixedStr`](super::FixedStr) for
/// string keys such as file names); keys compare by their bytes. The map
/// is split into stripes, each an open-addressing table under its own
/// robust process-shared lock, so operations on different stripes never
/// wait for each other. Every operation is atomic, also against a process
/// killed in the middle of one: the next process to take that stripe's lock
/// undoes the unfinished change (a value half overwritten gets its old
/// value back) before it goes on, and [`recoveries`](Self::recoveries)
/// counts such repairs.
///
/// A stripe's lock is held for one operation (tens to hundreds of
/// nanoseconds; longer for an `modify` closure, and a
/// [`snapshot`](Self::snapshot) holds every stripe while it copies), but a
/// process stopped (SIGSTOP) inside one holds it until continued;
/// [`with_lock_timeout`](Self::with_lock_timeout) bounds the wait.
///
/// ```
/// # let name = format!("shmkit-doc-map-{}", std::process::id());
/// use shmkit::collections::ShmMap;
/// let counts = ShmMap::<u64, u64>::create(&name, 1000)?;
/// counts.insert(7, 1)?;
/// counts.modify(7, |n| Some(n.unwrap_or(0) + 1))?; // atomic read-modify-write
/// let other = ShmMap::<u64, u64>::open(&name)?;    // any process, by name
/// assert_eq!(other.get(&7)?, Some(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShmMap<K: Record, V: Record> {
    inner: DynMap,
    _types: Types<K, V>,
}

/// Marks the key and value types without owning any (`Send` and `Sync`
/// whatever they are: the map holds bytes, copied in and out).
type Types<K, V> = PhantomData<fn(K, V) -> (K, V)>;

impl<K: Record, V: Record> ShmMap<K, V> {
    fn types() -> Result<[(&'static str, String); 2]> {
        Ok([("key", dtype_of::<K>()?), ("value", dtype_of::<V>()?)])
    }

    fn wrap(inner: DynMap) -> Self {
        ShmMap { inner, _types: PhantomData }
    }

    /// Creates map segment `name` for `capacity` entries. Keys are spread
    /// over stripes by a fixed hash, and each stripe has room for its
    /// share plus a margin (about 1.3× for large maps), so keys of any
    /// ordinary kind fit `capacity` and usually more; keys crafted to
    /// collide (the hash is not keyed) fill one stripe early, which then
    /// reports [`MapError::Full`].
    pub fn create(name: &str, capacity: usize) -> Result<Self> {
        let [(_, k), (_, v)] = Self::types()?;
        DynMap::create_typed(name, (k, size_of::<K>()), (v, size_of::<V>()), capacity).map(Self::wrap)
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(capacity: usize) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, capacity))
    }

    /// Opens map segment `name`, which must hold keys `K` and values `V`
    /// (by their numpy dtypes: [`Error::WrongType`](crate::Error::WrongType) otherwise).
    pub fn open(name: &str) -> Result<Self> {
        DynMap::open_expecting(name, Some(&Self::types()?)).map(Self::wrap)
    }

    /// This handle, with every operation giving up with
    /// [`MapError::LockTimeout`] if a stripe's lock stays held longer than
    /// `limit` (by a stopped process, say). Without it they wait.
    pub fn with_lock_timeout(self, limit: Duration) -> Self {
        Self::wrap(self.inner.with_lock_timeout(limit))
    }

    /// Inserts `key → value`; returns the value it replaced, if any.
    /// [`MapError::Full`] if the key's stripe has no free slot.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, MapError> {
        let mut old = V::zeroed();
        let replaced = self.inner.insert_into(
            bytemuck::bytes_of(&key),
            bytemuck::bytes_of(&value),
            bytemuck::bytes_of_mut(&mut old),
        )?;
        Ok(replaced.then_some(old))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &K) -> Result<Option<V>, MapError> {
        let mut out = V::zeroed();
        Ok(self.inner.get_into(bytemuck::bytes_of(key), bytemuck::bytes_of_mut(&mut out))?.then_some(out))
    }

    /// True if `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool, MapError> {
        Ok(self.get(key)?.is_some())
    }

    /// Removes `key`; returns its value, if it was present.
    pub fn remove(&self, key: &K) -> Result<Option<V>, MapError> {
        let mut out = V::zeroed();
        Ok(self.inner.remove_into(bytemuck::bytes_of(key), bytemuck::bytes_of_mut(&mut out))?.then_some(out))
    }

    /// Atomic read-modify-write of one entry: `f` gets the current value
    /// (`None` if absent) and returns the new one (`None` removes it),
    /// all under the entry's stripe lock. Returns the new value.
    ///
    /// `f` runs under the entry's stripe lock, so keep it short, and it
    /// must not wait for anything that needs this map. Map calls from `f`
    /// itself (on this thread) fail with [`MapError::InModify`]
    /// instead of deadlocking; calls from threads or processes `f` waits
    /// for are not caught, and would wait for good (or until
    /// [`with_lock_timeout`](Self::with_lock_timeout)).
    pub fn modify(&self, key: K, f: impl FnOnce(Option<V>) -> Option<V>) -> Result<Option<V>, MapError> {
        let mut new = None;
        self.inner.modify(bytemuck::bytes_of(&key), |current, out| {
            new = f(current.map(bytemuck::pod_read_unaligned));
            new.as_ref().inspect(|v| out.copy_from_slice(bytemuck::bytes_of(*v))).is_some()
        })?;
        Ok(new)
    }

    /// Entries now: exact while no operation is under way, otherwise a
    /// moment's count. A stripe whose journal shows an operation under way
    /// is locked for a moment (at most a millisecond), which repairs it if
    /// its writer died mid-operation: a count that a dead writer left
    /// behind is never read as the truth.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True if [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The capacity asked for at create.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// Every entry, as one consistent snapshot: it holds every stripe's
    /// lock while it copies (briefly stopping writers), in stripe order.
    pub fn snapshot(&self) -> Result<Vec<(K, V)>, MapError> {
        let mut out = Vec::with_capacity(self.len());
        self.inner.for_each(|k, v| out.push((bytemuck::pod_read_unaligned(k), bytemuck::pod_read_unaligned(v))))?;
        Ok(out)
    }

    /// Maps every page of the map into this process now, in one call
    /// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+), instead of a page
    /// fault at each first touch: worth it before heavy use of a large map.
    pub fn populate(&self) {
        self.inner.populate();
    }

    /// How many times a process found a stripe whose last holder died in
    /// the middle of changing it, and repaired it (undid the unfinished
    /// change and recounted the stripe), over the map's whole life.
    pub fn recoveries(&self) -> u64 {
        self.inner.recoveries()
    }
}

impl<K: Record, V: Record> fmt::Debug for ShmMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmMap")
            .field("name", &self.name())
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

crate::segment::lifetime_api!(|s| crate::segment::HasSegment::segment(&s.inner); impl[K: Record, V: Record] ShmMap<K, V>);
