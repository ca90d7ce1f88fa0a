//! `DynVec`: the append-only list engine, elements of a numpy dtype chosen
//! at run time as bytes; [`ShmVec<T>`](super::ShmVec) is its typed face.
//! Pushed to by many processes at once without a lock.
//!
//! ```text
//! head      192 bytes (see `header`)
//! claimed   u64 at 192, alone in its cache line: slots handed out so far
//! pushers   1024 bytes from 256: the places pushing handles hold (`segment::slots`)
//! gens      1024 u32 from 1280: each pusher place's generation
//! states    one u32 per slot from 5376: empty, being written by (place, generation), or ready
//! elements  capacity × the element size, 64-aligned
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
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use super::error::PushError;
use super::header::{Head, Magic, HEAD_LEN};
use crate::kind::SegmentKind;
use crate::npy::record::dtype_at_run_time;
use crate::segment::slots::SlotTable;
use crate::segment::{align_up, liveness, other_head, Segment};
use crate::{Error, Result};

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

/// What one slot of a list holds now.
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

/// An append-only list in a named segment whose elements are a numpy dtype
/// chosen at run time, passed as their bytes: the engine under
/// [`ShmVec`](super::ShmVec), for bindings to languages without Rust's
/// types. Everything `ShmVec` promises holds here too.
///
/// ```
/// use shmkit::collections::{DynVec, Item};
/// let log = DynVec::create_unique("<u2", 10)?;
/// assert_eq!(log.push(&7u16.to_le_bytes()).unwrap(), 0);
/// let mut out = [0u8; 2];
/// assert_eq!(log.item_into(0, &mut out), Item::Ready(()));
/// assert_eq!(u16::from_le_bytes(out), 7);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct DynVec {
    seg: Segment,
    capacity: usize,
    elements_at: usize,
    item: (String, usize),
    pushers: SlotTable,
    /// This handle's pusher place and its state word's tag, once it pushed.
    me: OnceLock<(usize, u32)>,
}

impl DynVec {
    /// Creates list segment `name` with room for `capacity` elements of
    /// `dtype` (a numpy dtype string).
    pub fn create(name: &str, dtype: &str, capacity: usize) -> Result<Self> {
        Self::create_typed(name, dtype_at_run_time(dtype)?, capacity)
    }

    /// Like [`create`](Self::create), under a fresh unique name.
    pub fn create_unique(dtype: &str, capacity: usize) -> Result<Self> {
        let item = dtype_at_run_time(dtype)?;
        crate::name::retry_unique(|n| Self::create_typed(n, item.clone(), capacity))
    }

    /// Creates it with a canonical `(tag, size)` element type.
    pub(super) fn create_typed(name: &str, item: (String, usize), capacity: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::InvalidArgument("a list needs a capacity of at least 1".into()));
        }
        let too_big = || Error::InvalidArgument(format!("a list of {capacity} elements of this size overflows"));
        let (elements_at, len) = layout(capacity, item.1).ok_or_else(too_big)?;
        let head = Self::head(capacity as u64, item.1);
        let seg = Segment::create(name, SegmentKind::List, &other_head(&[("item", item.0.clone())]), len, |seg| {
            seg.write(0, &head.encode());
            Ok(())
        })?;
        Ok(Self::wrap(seg, capacity, elements_at, item))
    }

    /// Opens list segment `name`, whatever its element dtype (see
    /// [`dtype`](Self::dtype)).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_expecting(name, None)
    }

    /// Opens it, refusing it ([`Error::WrongType`]) unless its elements
    /// are exactly `types`.
    pub(super) fn open_expecting(name: &str, types: Option<&[(&str, String); 1]>) -> Result<Self> {
        let seg = Segment::open(name, SegmentKind::List)?;
        if let Some(t) = types {
            seg.check_types(t)?;
        }
        let tag = seg.layout().types.iter().find(|(role, _)| role == "item").map(|(_, t)| t.clone());
        let tag = tag.ok_or_else(|| Error::bad_header(name, "it records no element type"))?;
        let item = dtype_at_run_time(&tag)?;
        let found = Head::read_checked(&seg, &Self::head(0, item.1))?;
        let capacity = usize::try_from(found.capacity).ok().filter(|&c| c > 0);
        let fits = capacity.and_then(|c| layout(c, item.1).map(|l| (c, l)));
        match fits {
            Some((capacity, (elements_at, len))) if len == seg.data_len() => {
                Ok(Self::wrap(seg, capacity, elements_at, item))
            }
            _ => Err(Error::bad_header(
                name,
                format!("capacity {} does not fit its {} bytes", found.capacity, seg.data_len()),
            )),
        }
    }

    fn wrap(seg: Segment, capacity: usize, elements_at: usize, item: (String, usize)) -> Self {
        let pushers = SlotTable::new(PUSHERS, MAX_PUSHERS, liveness::SLOTS);
        DynVec { seg, capacity, elements_at, item, pushers, me: OnceLock::new() }
    }

    fn head(capacity: u64, size: usize) -> Head {
        Head { magic: Magic::List, capacity, key_size: size as u32, value_size: 0, stripes: 1, slots: 0 }
    }

    /// The elements' numpy dtype (canonical).
    pub fn dtype(&self) -> &str {
        &self.item.0
    }

    /// Bytes of one element.
    pub fn item_size(&self) -> usize {
        self.item.1
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

    /// Appends `value` (one element's bytes); returns its index.
    /// [`PushError::Full`] once every slot is taken; a value of the wrong
    /// length is [`PushError::WrongLength`].
    pub fn push(&self, value: &[u8]) -> Result<usize, PushError<()>> {
        let name = || self.seg.name().to_owned();
        if value.len() != self.item.1 {
            return Err(PushError::WrongLength { name: name(), expected: self.item.1, found: value.len(), value: () });
        }
        if self.seg.check_process().is_err() {
            return Err(PushError::Inherited { name: name(), value: () });
        }
        let Some((_, tag)) = self.pusher() else {
            return Err(PushError::TooManyPushers { name: name(), max: MAX_PUSHERS, value: () });
        };
        let mut i = usize::try_from(self.claimed().load(Ordering::Acquire)).unwrap_or(usize::MAX);
        loop {
            if i >= self.capacity {
                return Err(PushError::Full { name: name(), capacity: self.capacity, value: () });
            }
            let claimed = self.state(i).compare_exchange(EMPTY, tag, Ordering::AcqRel, Ordering::Relaxed);
            if claimed.is_ok() {
                break;
            }
            i += 1;
        }
        self.claimed().fetch_max(i as u64 + 1, Ordering::AcqRel);
        crate::fault::point("vec-push-claimed");
        self.seg.write(self.element_at(i), value);
        self.state(i).store(READY, Ordering::Release);
        Ok(i)
    }

    /// What slot `i` holds now (see [`ShmVec::item`](super::ShmVec::item)),
    /// its bytes copied into `out` (one element's size) when `Ready`.
    pub fn item_into(&self, i: usize, out: &mut [u8]) -> Item<()> {
        assert_eq!(out.len(), self.item.1, "item_into: `out` must be one element's size");
        if i >= self.capacity {
            return Item::Vacant;
        }
        let state = self.state(i).load(Ordering::Acquire);
        match state {
            EMPTY => Item::Vacant,
            READY => {
                let at = self.seg.bytes(self.element_at(i), out.len());
                // SAFETY: `bytes` checked the element lies in the data; its
                // state (acquire) says its pusher wrote it whole before
                // marking it ready (release), and no shmkit code writes a
                // slot after that; raw pointers, no reference into memory
                // other processes share.
                unsafe { std::ptr::copy_nonoverlapping(at, out.as_mut_ptr(), out.len()) };
                Item::Ready(())
            }
            s if s & (3 << 30) == WRITING => self.writing(s),
            _ => Item::Hole, // scribbled over by another process
        }
    }

    /// Element `i`'s bytes, if its push is complete.
    pub fn get(&self, i: usize) -> Option<Vec<u8>> {
        let mut out = vec![0; self.item.1];
        (self.item_into(i, &mut out) == Item::Ready(())).then_some(out)
    }

    /// A slot being written: pending while its pusher's place is held
    /// under the generation it recorded, else a hole.
    fn writing(&self, state: u32) -> Item<()> {
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
        self.elements_at + place(i, self.capacity) * self.item.1
    }
}

impl Drop for DynVec {
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

impl fmt::Debug for DynVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynVec")
            .field("name", &self.seg.name())
            .field("dtype", &self.item.0)
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[] DynVec);
