//! `ShmVec<T>`: an append-only list in a named segment, pushed to by many
//! processes at once without a lock.
//!
//! ```text
//! head      192 bytes (see `header`)
//! claimed   u64 at 192, alone in its cache line: slots handed out so far
//! ready     one byte per slot from 256: 1 once its element is written
//! elements  capacity × size_of::<T>(), 64-aligned
//! ```
//!
//! Slots are dealt over 16 lanes (see `place`), bytes and elements alike,
//! so that neighbouring slots lie far apart.
//!
//! A push claims a slot with one `fetch_add`, writes its element, then
//! sets the slot's ready byte (release). Readers read a slot only once its
//! ready byte is set (acquire), and nothing writes a slot after that, so
//! no reader ever sees a half-written element. A pusher killed between its
//! claim and its ready byte leaves that one slot empty for good.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use bytemuck::Pod;

use super::header::{type_label, Head, Magic, HEAD_LEN};
use crate::kind::SegmentKind;
use crate::segment::{align_up, head_for, Segment};
use crate::{Error, Result};

const CLAIMED: usize = HEAD_LEN;
const READY: usize = HEAD_LEN + 64;

/// An append-only list of `Pod` elements in a named segment: Python's
/// `Manager().list()` for appends, without a server.
///
/// Any number of processes push at once, lock-free; each element becomes
/// visible whole or not at all. Indexing and iteration see the elements
/// whose push is complete. The capacity is fixed at create; pushes past it
/// fail with [`Error::Full`].
///
/// ```
/// # let name = format!("doc-vec-{}", std::process::id());
/// use shmkit::collections::ShmVec;
/// let log = ShmVec::<u64>::create(&name, 1000)?;
/// log.push(7)?;
/// let other = ShmVec::<u64>::open(&name)?; // any process, by name
/// other.push(8)?;
/// assert_eq!(log.iter().collect::<Vec<_>>(), [7, 8]);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ShmVec<T: Pod> {
    seg: Segment,
    capacity: usize,
    elements_at: usize,
    _elem: PhantomData<fn(T) -> T>,
}

impl<T: Pod> ShmVec<T> {
    /// Creates list segment `name` with room for `capacity` elements.
    pub fn create(name: &str, capacity: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::InvalidArgument("a list needs a capacity of at least 1".into()));
        }
        let too_big = || Error::InvalidArgument(format!("a list of {capacity} elements of this size overflows"));
        let (elements_at, len) = layout(capacity, size_of::<T>()).ok_or_else(too_big)?;
        let head = Self::head(capacity as u64);
        let seg = Segment::create(name, SegmentKind::List, &head_for(SegmentKind::List, None), len, |seg| {
            seg.write(0, &head.encode());
            Ok(())
        })?;
        Ok(ShmVec { seg, capacity, elements_at, _elem: PhantomData })
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(capacity: usize) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, capacity))
    }

    /// Opens list segment `name`, which must hold elements `T` (checked by
    /// size and type name: [`Error::WrongType`]).
    pub fn open(name: &str) -> Result<Self> {
        let seg = Segment::open(name, SegmentKind::List)?;
        let found = Head::read_checked(&seg, &Self::head(0), describe)?;
        let capacity = usize::try_from(found.capacity).ok().filter(|&c| c > 0);
        let fits = capacity.and_then(|c| layout(c, size_of::<T>()).map(|l| (c, l)));
        match fits {
            Some((capacity, (elements_at, len))) if len == seg.data_len() => {
                Ok(ShmVec { seg, capacity, elements_at, _elem: PhantomData })
            }
            _ => Err(Error::bad_header(
                name,
                format!("capacity {} does not fit its {} bytes", found.capacity, seg.data_len()),
            )),
        }
    }

    fn head(capacity: u64) -> Head {
        Head {
            magic: Magic::List,
            capacity,
            key_size: size_of::<T>() as u32,
            value_size: 0,
            stripes: 1,
            slots: 0,
            key_type: type_label::<T>(),
            value_type: String::new(),
        }
    }

    /// Appends `value`; returns its index. [`Error::Full`] once `capacity`
    /// slots have been handed out.
    pub fn push(&self, value: T) -> Result<usize> {
        let claimed = self.claimed().fetch_add(1, Ordering::AcqRel);
        let i = usize::try_from(claimed).ok().filter(|&i| i < self.capacity).ok_or_else(|| Error::Full {
            name: self.seg.name().to_owned(),
            what: format!("all {} slots of the list are taken", self.capacity),
        })?;
        self.seg.write(self.element_at(i), bytemuck::bytes_of(&value));
        self.ready(i).store(1, Ordering::Release);
        Ok(i)
    }

    /// Element `i`, if its push is complete.
    pub fn get(&self, i: usize) -> Option<T> {
        // Bounded by the capacity, not `len()`: a set ready byte already
        // says the slot was claimed, and `claimed` is the line every push
        // writes.
        if i >= self.capacity || self.ready(i).load(Ordering::Acquire) != 1 {
            return None;
        }
        let at = self.seg.bytes(self.element_at(i), size_of::<T>());
        // SAFETY: `bytes` checked the element lies in the data; its ready
        // byte (acquire) says its pusher wrote it whole before setting the
        // byte (release), and no shmkit code writes a slot after that.
        Some(unsafe { at.cast::<T>().read_unaligned() })
    }

    /// Slots handed out so far (at most the capacity): every complete push,
    /// plus pushes under way and slots whose pusher died before finishing.
    pub fn len(&self) -> usize {
        let claimed = self.claimed().load(Ordering::Acquire);
        usize::try_from(claimed).map_or(self.capacity, |c| c.min(self.capacity))
    }

    /// True if nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most elements the list holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The complete elements, in index order (slots still being written,
    /// or abandoned by a pusher that died, are skipped).
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
        self.seg.populate();
    }

    fn claimed(&self) -> &AtomicU64 {
        self.seg.atomic_u64(CLAIMED)
    }

    fn ready(&self, i: usize) -> &AtomicU8 {
        self.seg.atomic_u8(READY + place(i, self.capacity))
    }

    fn element_at(&self, i: usize) -> usize {
        self.elements_at + place(i, self.capacity) * size_of::<T>()
    }
}

/// Lanes the slots are dealt over (see [`place`]).
const LANES: usize = 16;

/// Where slot `i` lies among the `capacity` slots (and ready bytes): dealt
/// round-robin over [`LANES`] lanes, so that consecutive slots, which
/// different processes push at the same moment, lie a lane apart and (but
/// in small lists) on different cache lines: sharing one makes each push
/// wait for the other process's write.
fn place(i: usize, capacity: usize) -> usize {
    (i % LANES) * capacity.div_ceil(LANES) + i / LANES
}

/// Where the elements start and the body's length, for `capacity`
/// elements of `size` bytes; `None` on overflow.
fn layout(capacity: usize, size: usize) -> Option<(usize, usize)> {
    let slots = capacity.div_ceil(LANES).checked_mul(LANES)?;
    let elements_at = align_up(READY.checked_add(slots)?)?;
    let len = elements_at.checked_add(slots.checked_mul(size)?)?;
    (len <= isize::MAX as usize).then_some((elements_at, len))
}

/// How a list's type reads in errors.
fn describe(h: &Head) -> String {
    format!("ShmVec<{} ({} bytes)>", h.key_type, h.key_size)
}

impl<T: Pod> fmt::Debug for ShmVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmVec")
            .field("name", &self.seg.name())
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

crate::sync::segment_lifetime! { impl<T: Pod> ShmVec<T> }
