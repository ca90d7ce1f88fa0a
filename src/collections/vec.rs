//! `ShmVec<T>`: an append-only list of records in a named segment, the
//! typed face of [`DynVec`](super::DynVec) (which holds the engine and
//! its design note).

use std::fmt;
use std::marker::PhantomData;

use super::dyn_vec::{DynVec, Item};
use super::error::PushError;
use crate::npy::record::dtype_of;
use crate::{Record, Result};

/// An append-only list of records in a named segment: Python's
/// `Manager().list()` for appends, without a server.
///
/// Any number of processes push at once, lock-free; each element becomes
/// visible whole or not at all. Indexing and iteration see the elements
/// whose push is complete; [`item`](Self::item) also tells a push under
/// way from one whose pusher died. The capacity is fixed at create;
/// pushes past it fail with [`PushError::Full`].
///
/// ```
/// # let name = format!("shmkit-doc-vec-{}", std::process::id());
/// use shmkit::collections::ShmVec;
/// let log = ShmVec::<u64>::create(&name, 1000)?;
/// log.push(7).unwrap();
/// let other = ShmVec::<u64>::open(&name)?; // any process, by name
/// other.push(8).unwrap();
/// assert_eq!(log.iter().collect::<Vec<_>>(), [7, 8]);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ShmVec<T: Record> {
    inner: DynVec,
    _elem: PhantomData<fn(T) -> T>,
}

impl<T: Record> ShmVec<T> {
    fn types() -> Result<[(&'static str, String); 1]> {
        Ok([("item", dtype_of::<T>()?)])
    }

    fn wrap(inner: DynVec) -> Self {
        ShmVec { inner, _elem: PhantomData }
    }

    /// Creates list segment `name` with room for `capacity` elements.
    pub fn create(name: &str, capacity: usize) -> Result<Self> {
        let [(_, tag)] = Self::types()?;
        DynVec::create_typed(name, (tag, size_of::<T>()), capacity).map(Self::wrap)
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(capacity: usize) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, capacity))
    }

    /// Opens list segment `name`, which must hold elements `T` (by their
    /// numpy dtype: [`Error::WrongType`](crate::Error::WrongType) otherwise).
    pub fn open(name: &str) -> Result<Self> {
        DynVec::open_expecting(name, Some(&Self::types()?)).map(Self::wrap)
    }

    /// Appends `value`; returns its index. [`PushError::Full`] once every
    /// slot is taken.
    pub fn push(&self, value: T) -> Result<usize, PushError<T>> {
        self.inner.push(bytemuck::bytes_of(&value)).map_err(|e| e.with_value(value))
    }

    /// Element `i`, if its push is complete.
    pub fn get(&self, i: usize) -> Option<T> {
        match self.item(i) {
            Item::Ready(v) => Some(v),
            _ => None,
        }
    }

    /// What slot `i` holds now: a complete element, a push under way, a
    /// hole left by a pusher that died, or nothing yet. For a reader that
    /// follows the list as it grows: take `Ready`, skip `Hole`, wait on
    /// `Pending` and `Vacant`.
    pub fn item(&self, i: usize) -> Item<T> {
        let mut out = T::zeroed();
        match self.inner.item_into(i, bytemuck::bytes_of_mut(&mut out)) {
            Item::Ready(()) => Item::Ready(out),
            Item::Pending => Item::Pending,
            Item::Hole => Item::Hole,
            Item::Vacant => Item::Vacant,
        }
    }

    /// Slots handed out so far (at most the capacity): every complete push,
    /// plus pushes under way and holes.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True if nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Most elements the list holds.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The complete elements, in index order (slots still being written,
    /// and holes, are skipped).
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The complete elements, copied out.
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }

    /// Maps every page of the list into this process now, in one call
    /// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+), instead of a page
    /// fault at each first touch: worth it before heavy use of a large list.
    pub fn populate(&self) {
        self.inner.populate();
    }
}

impl<T: Record> fmt::Debug for ShmVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmVec")
            .field("name", &self.name())
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

crate::segment::lifetime_api!(|s| crate::segment::HasSegment::segment(&s.inner); impl[T: Record] ShmVec<T>);
