//! The stream's engine: its segment (a `.npy` array of slots, then the
//! control block below), and the words publisher and subscribers share.
//!
//! ```text
//! control block, at `ctl` of the data (64-aligned, after the slots):
//! +0   slots u32 | subscribers u32 | holds u32 | policy u32 | lag limit ns u64     (set at create)
//! +64  newest u64: sequence number of the newest sample (0: none yet)
//! +72  published u32: futex word, bumped at every publish and at the end
//! +76  readers waiting u32 | +80 ended u32 (1: the publisher ended normally)
//! +84  freed u32: futex word, bumped when a subscriber moves on or lets go
//! +88  publisher waiting u32 | +92 publisher joined u32 (1 once a publisher took its place)
//! +128 slot words, u64 each: 0 empty, a sequence number, or that number
//!      with CLAIM set (the publisher checking holds), or WRITING
//! then a record per subscriber (64 bytes apart or more):
//!      +0 cursor u64 (next sequence number wanted) | +8 mode u32 | +12 dropped u32
//!      +16 holds: u64 each, the sequence number of a sample held, or 0
//! then the slot-table bytes: the publisher's, then one per subscriber
//! ```
//!
//! **Holding a sample** is a hazard-pointer handshake. A subscriber stores
//! the sequence number in a hold, then reads the slot word again: still
//! that number, the sample is its own until the hold is cleared. The
//! publisher, about to reuse a slot, sets CLAIM on its word, then reads
//! every hold: any hold of that number and it puts the word back and picks
//! another slot. Both sides store, then load, sequentially consistent, so
//! one of them always sees the other: a slot is never written while held.
//!
//! Everything read here was written by other processes: counts are
//! checked against the segment at open, indexes against those counts.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::kind::SegmentKind;
use crate::npy::dtype::DType;
use crate::npy::header::Header;
use crate::segment::liveness::Presence;
use crate::segment::slots::{SlotTable, MAX as MAX_TABLE};
use crate::segment::{align_up, data_len, liveness, Segment};
use crate::sync::raw::{futex_wait, futex_wake_all};
use crate::{Error, Result};

/// Most subscribers a stream may have at once.
pub const MAX_SUBSCRIBERS: usize = MAX_TABLE;
/// Most samples one subscriber may hold at once.
pub const MAX_HOLDS: usize = 64;
/// Most slots a stream may have.
pub const MAX_SLOTS: usize = 1 << 16;

const SLOTS: usize = 0;
const SUBSCRIBERS: usize = 4;
const HOLDS: usize = 8;
const POLICY: usize = 12;
const LAG_NS: usize = 16;
const NEWEST: usize = 64;
const PUBLISHED: usize = 72;
const READERS_WAITING: usize = 76;
const ENDED: usize = 80;
const FREED: usize = 84;
const PUBLISHER_WAITING: usize = 88;
const PUBLISHER_JOINED: usize = 92;
const SLOT_WORDS: usize = 128;

/// A subscriber record's fields.
const CURSOR: usize = 0;
const MODE: usize = 8;
const DROPPED: usize = 12;
const HOLD_WORDS: usize = 16;

/// Slot word: the publisher writes the slot (no sample in it).
pub(super) const WRITING: u64 = u64::MAX;
/// Slot word bit: the publisher checks whether its sample is held.
const CLAIM: u64 = 1 << 63;
/// Sequence numbers stay below this (a stream would need centuries at a
/// billion samples a second to reach it); one above is a corrupt segment.
pub(super) const MAX_SEQ: u64 = 1 << 62;

/// What a subscriber's second look at a slot finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Look {
    /// The sample is its own until the hold is cleared.
    Held,
    /// The publisher is checking holds: it will put the word back or reuse
    /// the slot (or it died doing so, and the sample is intact).
    Claimed,
    /// Another sample, or none.
    Gone,
}

/// A subscriber's mode: in order, its cursor holding back a `Block` publisher.
pub(super) const IN_ORDER: u32 = 0;
/// A subscriber's mode: the newest only, holding nothing back.
pub(super) const LATEST: u32 = 1;

/// What a lagging in-order subscriber does to the publisher; fixed at create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The publisher's `loan` waits for in-order subscribers to read the
    /// slot it would reuse; a subscriber that holds it back longer than
    /// `lag` is dropped (its next read says so, then goes on from the
    /// newest sample), so a stopped reader never stalls the stream for good.
    Block {
        /// How long one subscriber may hold the publisher back.
        lag: Duration,
    },
    /// The oldest unread slot is reused; an in-order subscriber's next
    /// sample says how many it missed.
    Overwrite,
}

/// A stream's sizes, fixed at create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Config {
    pub slots: usize,
    pub subscribers: usize,
    pub holds: usize,
    pub policy: Policy,
}

impl Config {
    /// Checks the sizes: every subscriber's holds, the newest sample and a
    /// loan must fit in the slots at once, so holds never stop the publisher.
    pub fn check(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidArgument(why));
        if !(1..=MAX_SUBSCRIBERS).contains(&self.subscribers) {
            return bad(format!("a stream has 1 to {MAX_SUBSCRIBERS} subscribers, not {}", self.subscribers));
        }
        if !(1..=MAX_HOLDS).contains(&self.holds) {
            return bad(format!("a subscriber holds 1 to {MAX_HOLDS} samples, not {}", self.holds));
        }
        let need = self.subscribers * self.holds + 2;
        if self.slots < need || self.slots > MAX_SLOTS {
            return bad(format!(
                "a stream of {} subscribers holding {} samples each needs {need} to {MAX_SLOTS} slots (their holds, \
                 the newest sample and the one being written), not {}",
                self.subscribers, self.holds, self.slots
            ));
        }
        if let Policy::Block { lag } = self.policy {
            if lag.is_zero() || lag.as_nanos() > u64::MAX as u128 {
                return bad(format!("a Block stream's lag limit must be positive and finite, not {lag:?}"));
            }
        }
        Ok(())
    }

    /// Bytes of control block.
    fn control_len(&self) -> usize {
        SLOT_WORDS + 8 * self.slots + self.subscribers * record_len(self.holds) + 1 + self.subscribers
    }
}

/// Bytes of one subscriber's record.
fn record_len(holds: usize) -> usize {
    align_up(HOLD_WORDS + 8 * holds).expect("holds are few")
}

/// A stream segment, opened: what its handles in one process share.
pub(super) struct Core {
    pub seg: Segment,
    pub cfg: Config,
    pub dtype: DType,
    /// A sample's shape (the array's shape without its slot axis).
    pub frame: Vec<usize>,
    pub frame_bytes: usize,
    ctl: usize,
    records: usize,
    pub publisher: SlotTable,
    pub subscribers: SlotTable,
}

impl Core {
    /// Creates stream segment `name`: `cfg.slots` samples of `frame` of
    /// `dtype`, every slot empty.
    pub fn create(name: &str, dtype: DType, frame: &[usize], cfg: Config, first_seq: u64) -> Result<Core> {
        cfg.check()?;
        let (shape, frames_len) = Self::array(dtype, frame, cfg.slots)?;
        let ctl = align_up(frames_len).ok_or_else(|| too_big(frame))?;
        let len = ctl.checked_add(cfg.control_len()).ok_or_else(|| too_big(frame))?;
        let head = Header::encode(dtype, &shape, false);
        let lag = match cfg.policy {
            Policy::Block { lag } => lag.as_nanos() as u64,
            Policy::Overwrite => 0,
        };
        let seg = Segment::create(name, SegmentKind::Stream, &head, len, |seg| {
            let word = |at| seg.atomic_u32(ctl + at);
            word(SLOTS).store(cfg.slots as u32, Ordering::Relaxed);
            word(SUBSCRIBERS).store(cfg.subscribers as u32, Ordering::Relaxed);
            word(HOLDS).store(cfg.holds as u32, Ordering::Relaxed);
            word(POLICY).store(u32::from(matches!(cfg.policy, Policy::Block { .. })), Ordering::Relaxed);
            seg.atomic_u64(ctl + LAG_NS).store(lag, Ordering::Relaxed);
            // A publisher taking over a dead one's stream goes on counting.
            seg.atomic_u64(ctl + NEWEST).store(first_seq.saturating_sub(1), Ordering::Relaxed);
            Ok(())
        })?;
        Ok(Self::with(seg, cfg, dtype, frame.to_vec(), ctl))
    }

    /// Opens stream segment `name`, checking its control block against its
    /// length.
    pub fn open(name: &str) -> Result<Core> {
        let seg = Segment::open(name, SegmentKind::Stream)?;
        let header = seg.layout().header.clone().expect("streams have a .npy header");
        let bad = |why: &str| Error::bad_header(name, format!("a stream whose {why}"));
        let dtype = DType::from_descr(&header.descr).ok_or_else(|| bad("dtype shmkit does not know"))?;
        let (&slots, frame) = header.shape.split_first().ok_or_else(|| bad("array has no slot axis"))?;
        let (_, frames_len) = Self::array(dtype, frame, slots).map_err(|_| bad("array is too large"))?;
        let ctl = align_up(frames_len).ok_or_else(|| bad("array is too large"))?;
        let word = |at: usize| -> Result<usize> {
            let end =
                ctl.checked_add(at + 4).filter(|&e| e <= seg.data_len()).ok_or_else(|| bad("control block is cut"))?;
            Ok(seg.atomic_u32(end - 4).load(Ordering::Acquire) as usize)
        };
        let (subscribers, holds) = (word(SUBSCRIBERS)?, word(HOLDS)?);
        let lag = (word(LAG_NS)? as u64) | ((word(LAG_NS + 4)? as u64) << 32);
        let policy = match word(POLICY)? {
            0 => Policy::Overwrite,
            _ => Policy::Block { lag: Duration::from_nanos(lag) },
        };
        let cfg = Config { slots: word(SLOTS)?, subscribers, holds, policy };
        if cfg.slots != slots || cfg.check().is_err() || header.fortran {
            return Err(bad("control block disagrees with its array"));
        }
        if ctl.checked_add(cfg.control_len()).is_none_or(|end| end > seg.data_len()) {
            return Err(bad("control block is cut"));
        }
        let core = Self::with(seg, cfg, dtype, frame.to_vec(), ctl);
        if core.newest() >= MAX_SEQ {
            return Err(bad("newest sequence number is out of range"));
        }
        Ok(core)
    }

    fn with(seg: Segment, cfg: Config, dtype: DType, frame: Vec<usize>, ctl: usize) -> Core {
        let frame_bytes = frame.iter().product::<usize>() * dtype.itemsize();
        let records = ctl + SLOT_WORDS + 8 * cfg.slots;
        let tables = records + cfg.subscribers * record_len(cfg.holds);
        let publisher = SlotTable::new(tables, 1, liveness::SLOTS);
        let subscribers = SlotTable::new(tables + 1, cfg.subscribers, liveness::SLOTS + 1);
        Core { seg, cfg, dtype, frame, frame_bytes, ctl, records, publisher, subscribers }
    }

    /// The array's shape (slots first) and its bytes; an error for an
    /// empty frame or one too large.
    fn array(dtype: DType, frame: &[usize], slots: usize) -> Result<(Vec<usize>, usize)> {
        let shape: Vec<usize> = std::iter::once(slots).chain(frame.iter().copied()).collect();
        if frame.contains(&0) {
            return Err(Error::InvalidArgument(format!("a stream's samples must hold elements, not shape {frame:?}")));
        }
        let len = data_len(&shape, dtype.itemsize()).ok_or_else(|| too_big(frame))?;
        Ok((shape, len))
    }

    // -- shared words ---------------------------------------------------------

    fn u32(&self, at: usize) -> &AtomicU32 {
        self.seg.atomic_u32(self.ctl + at)
    }

    fn slot_word(&self, k: usize) -> &AtomicU64 {
        self.seg.atomic_u64(self.ctl + SLOT_WORDS + 8 * k)
    }

    fn record(&self, sub: usize) -> usize {
        assert!(sub < self.cfg.subscribers, "subscriber {sub}");
        self.records + sub * record_len(self.cfg.holds)
    }

    pub fn cursor(&self, sub: usize) -> &AtomicU64 {
        self.seg.atomic_u64(self.record(sub) + CURSOR)
    }

    pub fn mode(&self, sub: usize) -> &AtomicU32 {
        self.seg.atomic_u32(self.record(sub) + MODE)
    }

    pub fn dropped(&self, sub: usize) -> &AtomicU32 {
        self.seg.atomic_u32(self.record(sub) + DROPPED)
    }

    pub fn hold(&self, sub: usize, j: usize) -> &AtomicU64 {
        assert!(j < self.cfg.holds, "hold {j}");
        self.seg.atomic_u64(self.record(sub) + HOLD_WORDS + 8 * j)
    }

    /// The sequence number of the newest sample (0: none yet).
    pub fn newest(&self) -> u64 {
        self.seg.atomic_u64(self.ctl + NEWEST).load(Ordering::SeqCst)
    }

    /// True once the publisher ended the stream normally.
    pub fn ended(&self) -> bool {
        self.u32(ENDED).load(Ordering::SeqCst) != 0
    }

    /// The sequence number in slot `k` if it holds a published sample
    /// (`CLAIM` included: readable until the publisher's check completes).
    /// A number out of range (another process wrote over the word) is none.
    pub fn seq_in(&self, k: usize) -> Option<u64> {
        match self.slot_word(k).load(Ordering::SeqCst) & !CLAIM {
            0 => None,
            s if s >= MAX_SEQ => None,
            s => Some(s),
        }
    }

    /// What the subscriber's second look in the handshake finds in slot
    /// `k`, which it wants to hold as `seq`.
    pub fn second_look(&self, k: usize, seq: u64) -> Look {
        match self.slot_word(k).load(Ordering::SeqCst) {
            w if w == seq => Look::Held,
            w if w == seq | CLAIM => Look::Claimed,
            _ => Look::Gone,
        }
    }

    /// The bytes of slot `k`.
    pub fn frame_ptr(&self, k: usize) -> *mut u8 {
        assert!(k < self.cfg.slots, "slot {k}");
        self.seg.bytes(k * self.frame_bytes, self.frame_bytes)
    }

    // -- the publisher's side -------------------------------------------------

    /// Marks slot `k` as being written, if no live subscriber holds its
    /// sample (the handshake above); false if one does.
    pub fn claim(&self, k: usize) -> bool {
        let word = self.slot_word(k);
        let old = word.load(Ordering::SeqCst);
        if old != 0 && old != WRITING {
            word.store(old | CLAIM, Ordering::SeqCst);
            crate::fault::point("stream-claim");
            if self.held_by_someone(old & !CLAIM) {
                word.store(old & !CLAIM, Ordering::SeqCst);
                return false;
            }
        }
        word.store(WRITING, Ordering::SeqCst);
        true
    }

    /// Gives back a slot claimed and not published: empty again.
    pub fn unclaim(&self, k: usize) {
        self.slot_word(k).store(0, Ordering::SeqCst);
    }

    /// True if a subscriber (alive, or dead and not yet tidied away)
    /// holds `seq`. A record whose slot byte is clear is skipped: its
    /// subscriber is gone, or joins after this look and will see the claim.
    fn held_by_someone(&self, seq: u64) -> bool {
        (0..self.cfg.subscribers).any(|i| {
            self.subscribers.in_use(&self.seg, i)
                && (0..self.cfg.holds).any(|j| self.hold(i, j).load(Ordering::SeqCst) == seq)
        })
    }

    /// Subscribers in use now (alive, or dead and not yet tidied away).
    pub fn members(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.cfg.subscribers).filter(|&i| self.subscribers.in_use(&self.seg, i))
    }

    /// Tidies away subscriber `i` if its process is gone; true if it lives.
    pub fn member_alive(&self, i: usize) -> bool {
        self.subscribers.is_held(&self.seg, i)
    }

    /// Publishes the sample written in slot `k` as `seq` (below
    /// [`MAX_SEQ`]), and wakes readers.
    pub fn publish(&self, k: usize, seq: u64) {
        assert!(seq < MAX_SEQ, "sequence number {seq}");
        self.slot_word(k).store(seq, Ordering::SeqCst);
        crate::fault::point("stream-publish-before-newest");
        self.seg.atomic_u64(self.ctl + NEWEST).store(seq, Ordering::SeqCst);
        crate::fault::point("stream-publish-before-wake");
        self.bump(PUBLISHED, READERS_WAITING);
    }

    /// Ends the stream: readers drain it, then hear so.
    pub fn end(&self) {
        self.u32(ENDED).store(1, Ordering::SeqCst);
        self.bump(PUBLISHED, READERS_WAITING);
    }

    /// Tells the publisher a subscriber moved on or let go.
    pub fn freed(&self) {
        self.bump(FREED, PUBLISHER_WAITING);
    }

    fn bump(&self, word: usize, waiting: usize) {
        self.u32(word).fetch_add(1, Ordering::SeqCst);
        if self.u32(waiting).swap(0, Ordering::SeqCst) != 0 {
            futex_wake_all(self.u32(word));
        }
    }

    /// The publisher waits for a subscriber to move on, at most `limit`,
    /// unless `changed` (checked after announcing the wait) says not to.
    pub fn wait_freed(&self, limit: Duration, changed: impl Fn() -> bool) {
        self.wait(FREED, PUBLISHER_WAITING, limit, changed);
    }

    /// A subscriber waits for a publish or the end, as [`wait_freed`](Self::wait_freed).
    pub fn wait_published(&self, limit: Duration, changed: impl Fn() -> bool) {
        self.wait(PUBLISHED, READERS_WAITING, limit, changed);
    }

    fn wait(&self, word: usize, waiting: usize, limit: Duration, changed: impl Fn() -> bool) {
        let seen = self.u32(word).load(Ordering::SeqCst);
        self.u32(waiting).store(1, Ordering::SeqCst);
        // Checked after the flag is up: a change before it is seen here, a
        // change after it wakes us (the waker swaps the flag after changing).
        if !changed() {
            futex_wait(self.u32(word), seen, Some(limit));
        }
    }

    /// Marks that a publisher took its place (see [`publisher_alive`](Self::publisher_alive)).
    pub fn publisher_joined(&self) {
        self.u32(PUBLISHER_JOINED).store(1, Ordering::SeqCst);
    }

    /// True if the publisher's handle is open in a live process, or if it
    /// has not taken its place yet while the segment's creator lives (the
    /// name is linked a moment before the creating publisher takes it).
    pub fn publisher_alive(&self) -> bool {
        if self.publisher.is_held(&self.seg, 0) {
            return true;
        }
        self.u32(PUBLISHER_JOINED).load(Ordering::SeqCst) == 0
            && (self.seg.is_creator() || liveness::presence(self.seg.fd(), liveness::CREATOR) != Presence::Gone)
    }

    /// The segment's identity, to remove it and never a namesake.
    pub fn id(&self) -> crate::os::FileId {
        self.seg.id()
    }
}

fn too_big(frame: &[usize]) -> Error {
    Error::InvalidArgument(format!("a stream of samples of shape {frame:?} overflows the address space"))
}

/// What `shmkit ls` and `inspect` show of stream `name`; `None` if it does
/// not open as one. Looks only: tidies nothing.
pub(crate) fn summary(name: &str) -> Option<crate::segment::info::StreamInfo> {
    let core = Core::open(name).ok()?;
    let policy = match core.cfg.policy {
        Policy::Block { lag } => format!("block (lag limit {lag:?})"),
        Policy::Overwrite => "overwrite".to_owned(),
    };
    Some(crate::segment::info::StreamInfo {
        slots: core.cfg.slots,
        subscribers: core.cfg.subscribers,
        subscribers_alive: core.subscribers.count_alive(&core.seg),
        newest: core.newest(),
        policy,
        publisher_alive: core.publisher.count_alive(&core.seg) > 0,
        ended: core.ended(),
    })
}
