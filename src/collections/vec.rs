//! `ShmVec<T>`: an append-only list in a named segment, pushed to by many
//! processes at once without a lock.
//!
//! ```text
//! head      192 bytes (see `header`)
//! claimed   u64 at 192, alone in its cache line: slots handed out so far
//! pushers   1024 bytes from 256: the places pushing handles hold (`segment::slots`)
//! gens      1024 u32 from 1280: each pusher place's generation
//! states    one u32 per slot from 5376: empty, being written by (place, generation), or ready
//! elements  capacity × size_of::<T>(), 64-aligned
//! ```
//!
//! Slots are dealt over 16 lanes (see `place`), states and elements alike,
//! so that neighbouring slots lie far apart.
//!
//! A pushing handle first takes a pusher place (once; its process's death
//! frees it) and bumps the place's generation. A push claims the first
//! empty slot by swapping its state from empty to "being written by this
//! place and generation" (one compare-and-swap: a claimed slot always
//! names its pusher), writes the element, then marks the slot ready
//! (release). Readers read a slot only once it is ready (acquire), and
//! nothing writes a slot after that, so no reader ever sees a half-written
//! element. A slot whose pusher died before marking it is told apart from
//! one being written: its pusher's place is free, or taken again under a
//! newer generation. That slot is a [`Item::Hole`] for good.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use super::error::PushError;
use super::header::{Head, Magic, HEAD_LEN};
use crate::kind::SegmentKind;
use crate::segment::slots::SlotTable;
use crate::segment::{align_up, liveness, other_head, Segment};
use crate::{Error, Record, Result};

const CLAIMED: usize = HEAD_LEN;
const PUSHERS: usize = HEAD_LEN + 64;
/// Most handles pushing at once.
const MAX_PUSHERS: usize = 1024;
const GENS: usize = PUSHERS + MAX_PUSHERS;
const STATES: usize = GENS + 4 * MAX_PUSHERS;

/// A slot's state word: `READY`, or `WRITING | generation << 10 | place`.
const EMPTY: u32 = 0;
const WRITING: u32 = 1 << 30;
const READY: u32 = 2 << 30;
const PLACE_BITS: u32 = 10;
const GEN_MASK: u32 = (1 << 20) - 1;

/// What one slot of a [`ShmVec`] holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<T> {
    /// A complete element.
    Ready(T),
    /// Claimed by a pusher that is still alive and writing it (or stopped).
    Pending,
    /// Claimed by a pusher that died before finishing: empty for good;
    /// skip it.
    Hole,
    /// Not claimed yet (at or past the end of the list).
    Vacant,
}

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
    seg: Segment,
    capacity: usize,
    elements_at: usize,
    pushers: SlotTable,
    /// This handle's pusher place and its state word's tag, once it pushed.
    me: OnceLock<(usize, u32)>,
    _elem: PhantomData<fn(T) -> T>,
}

impl<T: Record> ShmVec<T> {
    fn types() -> Result<[(&'static str, String); 1]> {
        Ok([("item", crate::npy::record::dtype_of::<T>()?)])
    }

    /// Creates list segment `name` with room for `capacity` elements.
    pub fn create(name: &str, capacity: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::InvalidArgument("a list needs a capacity of at least 1".into()));
        }
        let too_big = || Error::InvalidArgument(format!("a list of {capacity} elements of this size overflows"));
        let (elements_at, len) = layout(capacity, size_of::<T>()).ok_or_else(too_big)?;
        let head = Self::head(capacity as u64);
        let seg = Segment::create(name, SegmentKind::List, &other_head(&Self::types()?), len, |seg| {
            seg.write(0, &head.encode());
            Ok(())
        })?;
        Ok(Self::wrap(seg, capacity, elements_at))
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(capacity: usize) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, capacity))
    }

    /// Opens list segment `name`, which must hold elements `T` (by their
    /// numpy dtype: [`Error::WrongType`] otherwise).
    pub fn open(name: &str) -> Result<Self> {
        let seg = Segment::open(name, SegmentKind::List)?;
        seg.check_types(&Self::types()?)?;
        let found = Head::read_checked(&seg, &Self::head(0))?;
        let capacity = usize::try_from(found.capacity).ok().filter(|&c| c > 0);
        let fits = capacity.and_then(|c| layout(c, size_of::<T>()).map(|l| (c, l)));
        match fits {
            Some((capacity, (elements_at, len))) if len == seg.data_len() => Ok(Self::wrap(seg, capacity, elements_at)),
            _ => Err(Error::bad_header(
                name,
                format!("capacity {} does not fit its {} bytes", found.capacity, seg.data_len()),
            )),
        }
    }

    fn wrap(seg: Segment, capacity: usize, elements_at: usize) -> Self {
        let pushers = SlotTable::new(PUSHERS, MAX_PUSHERS, liveness::SLOTS);
        ShmVec { seg, capacity, elements_at, pushers, me: OnceLock::new(), _elem: PhantomData }
    }

    fn head(capacity: u64) -> Head {
        Head { magic: Magic::List, capacity, key_size: size_of::<T>() as u32, value_size: 0, stripes: 1, slots: 0 }
    }

    /// This handle's pusher place and state tag, taken at its first push.
    fn pusher(&self) -> Option<(usize, u32)> {
        if let Some(me) = self.me.get() {
            return Some(*me);
        }
        let place = self.pushers.take(&self.seg)?;
        let generation = self.generation(place).fetch_add(1, Ordering::AcqRel).wrapping_add(1) & GEN_MASK;
        let me = (place, WRITING | generation << PLACE_BITS | place as u32);
        match self.me.set(me) {
            Ok(()) => Some(me),
            Err(_) => {
                self.pushers.give_back(&self.seg, place); // another thread of this handle won
                self.me.get().copied()
            }
        }
    }

    /// Appends `value`; returns its index. [`PushError::Full`] once every
    /// slot is taken.
    pub fn push(&self, value: T) -> Result<usize, PushError<T>> {
        let name = || self.seg.name().to_owned();
        if self.seg.check_process().is_err() {
            return Err(PushError::Inherited { name: name(), value });
        }
        let Some((_, tag)) = self.pusher() else {
            return Err(PushError::TooManyPushers { name: name(), max: MAX_PUSHERS, value });
        };
        let mut i = usize::try_from(self.claimed().load(Ordering::Acquire)).unwrap_or(usize::MAX);
        loop {
            if i >= self.capacity {
                return Err(PushError::Full { name: name(), capacity: self.capacity, value });
            }
            let claimed = self.state(i).compare_exchange(EMPTY, tag, Ordering::AcqRel, Ordering::Relaxed);
            if claimed.is_ok() {
                break;
            }
            i += 1;
        }
        self.claimed().fetch_max(i as u64 + 1, Ordering::AcqRel);
        crate::fault::point("vec-push-claimed");
        self.seg.write(self.element_at(i), bytemuck::bytes_of(&value));
        self.state(i).store(READY, Ordering::Release);
        Ok(i)
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
        if i >= self.capacity {
            return Item::Vacant;
        }
        let state = self.state(i).load(Ordering::Acquire);
        match state {
            EMPTY => Item::Vacant,
            READY => {
                let at = self.seg.bytes(self.element_at(i), size_of::<T>());
                // SAFETY: `bytes` checked the element lies in the data; its
                // state (acquire) says its pusher wrote it whole before
                // marking it ready (release), and no shmkit code writes a
                // slot after that.
                Item::Ready(unsafe { at.cast::<T>().read_unaligned() })
            }
            s if s & (3 << 30) == WRITING => self.writing(s),
            _ => Item::Hole, // scribbled over by another process
        }
    }

    /// A slot being written: pending while its pusher's place is held
    /// under the generation it recorded, else a hole.
    fn writing(&self, state: u32) -> Item<T> {
        let place = (state & ((1 << PLACE_BITS) - 1)) as usize;
        let generation = (state >> PLACE_BITS) & GEN_MASK;
        if place >= MAX_PUSHERS {
            return Item::Hole;
        }
        let current = self.generation(place).load(Ordering::Acquire) & GEN_MASK;
        match current == generation && self.pushers.is_held(&self.seg, place) {
            true => Item::Pending,
            false => Item::Hole,
        }
    }

    /// Slots handed out so far (at most the capacity): every complete push,
    /// plus pushes under way and holes.
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
        self.seg.populate();
    }

    fn claimed(&self) -> &AtomicU64 {
        self.seg.atomic_u64(CLAIMED)
    }

    fn generation(&self, place: usize) -> &AtomicU32 {
        self.seg.atomic_u32(GENS + 4 * place)
    }

    fn state(&self, i: usize) -> &AtomicU32 {
        self.seg.atomic_u32(STATES + 4 * place(i, self.capacity))
    }

    fn element_at(&self, i: usize) -> usize {
        self.elements_at + place(i, self.capacity) * size_of::<T>()
    }
}

impl<T: Record> Drop for ShmVec<T> {
    fn drop(&mut self) {
        if let (Some((place, _)), true) = (self.me.get(), self.seg.check_process().is_ok()) {
            self.pushers.give_back(&self.seg, *place);
        }
    }
}

/// Lanes the slots are dealt over (see [`place`]).
const LANES: usize = 16;

/// Where slot `i` lies among the `capacity` slots (and states): dealt
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
    let elements_at = align_up(STATES.checked_add(slots.checked_mul(4)?)?)?;
    let len = elements_at.checked_add(slots.checked_mul(size)?)?;
    (len <= isize::MAX as usize).then_some((elements_at, len))
}

impl<T: Record> fmt::Debug for ShmVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmVec")
            .field("name", &self.seg.name())
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[T: Record] ShmVec<T>);
