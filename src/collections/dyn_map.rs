//! `DynMap`: the hash map engine, keys and values as bytes of dtypes given
//! at run time (what Python binds); [`ShmMap<K, V>`](super::ShmMap) is
//! its typed face. Striped robust locks and a per-stripe journal, so a
//! writer that dies mid-operation is undone by whoever takes its stripe
//! next.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{compiler_fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::error::MapError;
use super::header::{Head, Magic, RECOVERIES};
use super::table::{self, hash, Op, Shape, EMPTY, FULL, GONE};
use crate::kind::SegmentKind;
use crate::npy::record::dtype_at_run_time;
use crate::segment::{other_head, Segment};
use crate::sync::raw::{Acquired, Failed, RawMutex, Wait, MUTEX_SIZE};
use crate::{Error, Result};

/// A hash map in a named segment whose keys and values are numpy dtypes
/// chosen at run time, passed as their bytes. The engine under
/// [`ShmMap`](super::ShmMap), for bindings to languages without Rust's
/// types; everything `ShmMap` promises holds here too.
///
/// ```
/// use shmkit::collections::DynMap;
/// let m = DynMap::create_unique("|S8", "<u4", 100)?;
/// m.insert(b"results\0", &7u32.to_le_bytes())?;
/// assert_eq!(m.get(b"results\0")?, Some(7u32.to_le_bytes().to_vec()));
/// assert_eq!((m.key_dtype(), m.value_dtype()), ("|S8", "<u4"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DynMap {
    seg: Segment,
    shape: Shape,
    locks: Vec<RawMutex>,
    capacity: usize,
    wait: Option<Duration>,
    key: (String, usize),
    value: (String, usize),
}

thread_local! {
    /// True while this thread runs a `modify` closure, which holds a
    /// stripe lock: any map operation then could deadlock, so it fails.
    static IN_MODIFY: Cell<bool> = const { Cell::new(false) };
}

/// Where a key is, or could go, in its stripe.
pub(super) enum Probe {
    Found(usize),
    Vacant(usize),
    StripeFull,
}

impl DynMap {
    /// Creates map segment `name` for `capacity` entries of `key_dtype →
    /// value_dtype` (numpy dtype strings). See [`ShmMap::create`](super::ShmMap::create).
    pub fn create(name: &str, key_dtype: &str, value_dtype: &str, capacity: usize) -> Result<Self> {
        let (key, value) = (dtype_at_run_time(key_dtype)?, dtype_at_run_time(value_dtype)?);
        Self::create_typed(name, key, value, capacity)
    }

    /// Like [`create`](Self::create), under a fresh unique name.
    pub fn create_unique(key_dtype: &str, value_dtype: &str, capacity: usize) -> Result<Self> {
        let (key, value) = (dtype_at_run_time(key_dtype)?, dtype_at_run_time(value_dtype)?);
        crate::name::retry_unique(|n| Self::create_typed(n, key.clone(), value.clone(), capacity))
    }

    /// Creates it with canonical `(tag, size)` key and value types.
    pub(super) fn create_typed(
        name: &str,
        key: (String, usize),
        value: (String, usize),
        capacity: usize,
    ) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::InvalidArgument("a map needs a capacity of at least 1".into()));
        }
        let too_big = || Error::InvalidArgument(format!("a map of {capacity} entries of this size overflows"));
        let shape = Shape::for_capacity(capacity, key.1, value.1).ok_or_else(too_big)?;
        let head = Self::head(capacity as u64, &shape, key.1, value.1);
        let types = [("key", key.0.clone()), ("value", value.0.clone())];
        let seg = Segment::create(name, SegmentKind::Map, &other_head(&types), shape.len, |seg| {
            seg.write(0, &head.encode());
            for s in 0..shape.stripes {
                // SAFETY: `bytes` checks the mutex lies in the data; the
                // offset is 64-aligned (stripes start at 192 and are 128
                // bytes apart in 64-aligned data); nobody else can see the
                // segment before it is published.
                let made = unsafe { RawMutex::init(seg.bytes(shape.mutex_at(s), MUTEX_SIZE)) };
                made.map_err(|e| Error::from_io("pthread_mutex_init", name, e))?;
            }
            Ok(())
        })?;
        Ok(Self::attach(seg, shape, capacity, key, value))
    }

    /// Opens map segment `name`, whatever its key and value dtypes (see
    /// [`key_dtype`](Self::key_dtype), [`value_dtype`](Self::value_dtype)).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_expecting(name, None)
    }

    /// Opens it, refusing it ([`Error::WrongType`]) unless it holds
    /// exactly `types` (canonical key and value tags).
    pub(super) fn open_expecting(name: &str, types: Option<&[(&str, String); 2]>) -> Result<Self> {
        let seg = Segment::open(name, SegmentKind::Map)?;
        if let Some(t) = types {
            seg.check_types(t)?;
        }
        let role = |r: &str| seg.layout().types.iter().find(|(role, _)| role == r).map(|(_, t)| t.clone());
        let bad = |why: String| Error::bad_header(name, why);
        let (key_tag, value_tag) =
            role("key").zip(role("value")).ok_or_else(|| bad("it records no key and value types".into()))?;
        let (key, value) = (dtype_at_run_time(&key_tag)?, dtype_at_run_time(&value_tag)?);
        let want = Self::head(
            0,
            &Shape::new(1, 1, key.1, value.1).ok_or_else(|| bad("its types are too large".into()))?,
            key.1,
            value.1,
        );
        let found = Head::read_checked(&seg, &want)?;
        let shape = Shape::new(found.stripes as usize, found.slots as usize, key.1, value.1);
        let shape = shape.filter(|s| s.len == seg.data_len()).ok_or_else(|| {
            bad(format!("{} stripes of {} slots do not fill its {} bytes", found.stripes, found.slots, seg.data_len()))
        })?;
        let capacity = usize::try_from(found.capacity).unwrap_or(usize::MAX);
        Ok(Self::attach(seg, shape, capacity, key, value))
    }

    fn head(capacity: u64, shape: &Shape, key_size: usize, value_size: usize) -> Head {
        Head {
            magic: Magic::Map,
            capacity,
            key_size: key_size as u32,
            value_size: value_size as u32,
            stripes: shape.stripes as u32,
            slots: shape.slots as u32,
        }
    }

    fn attach(seg: Segment, shape: Shape, capacity: usize, key: (String, usize), value: (String, usize)) -> Self {
        let locks = (0..shape.stripes)
            // SAFETY: the segment is a map (its kind was checked at open, or
            // this process just made it), whose creator initialised every
            // stripe's mutex before publishing it; `shape` matches the
            // segment's length, so `bytes` finds each inside the data,
            // 64-aligned; `locks` lives beside `seg`, which keeps it mapped.
            .map(|s| unsafe { RawMutex::attach(seg.bytes(shape.mutex_at(s), MUTEX_SIZE)) })
            .collect();
        DynMap { seg, shape, locks, capacity, wait: None, key, value }
    }

    /// The keys' numpy dtype (canonical: `'<u8'`, `'|S32'`, ...).
    pub fn key_dtype(&self) -> &str {
        &self.key.0
    }

    /// The values' numpy dtype.
    pub fn value_dtype(&self) -> &str {
        &self.value.0
    }

    /// Bytes of one key.
    pub fn key_size(&self) -> usize {
        self.key.1
    }

    /// Bytes of one value.
    pub fn value_size(&self) -> usize {
        self.value.1
    }

    /// This handle, with every operation giving up with
    /// [`MapError::LockTimeout`] if a stripe's lock stays held longer than
    /// `limit` (by a stopped process, say). Without it they wait.
    pub fn with_lock_timeout(mut self, limit: Duration) -> Self {
        self.wait = Some(limit);
        self
    }

    /// Sets the lock timeout of this handle (see [`with_lock_timeout`](Self::with_lock_timeout)); `None`: wait.
    pub fn set_lock_timeout(&mut self, limit: Option<Duration>) {
        self.wait = limit;
    }

    /// Checks that `bytes` is one `what` (a key or a value).
    fn check(&self, what: &'static str, bytes: &[u8], expected: usize) -> Result<(), MapError> {
        match bytes.len() == expected {
            true => Ok(()),
            false => {
                Err(MapError::WrongLength { name: self.seg.name().to_owned(), what, expected, found: bytes.len() })
            }
        }
    }

    /// Inserts `key → value`; the value it replaced, if any.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let mut old = vec![0; self.value.1];
        Ok(self.insert_into(key, value, &mut old)?.then_some(old))
    }

    /// Inserts `key → value`, copying the value it replaced into `old`;
    /// true if it replaced one.
    pub fn insert_into(&self, key: &[u8], value: &[u8], old: &mut [u8]) -> Result<bool, MapError> {
        self.check("key", key, self.key.1)?;
        self.check("value", value, self.value.1)?;
        self.check("value", old, self.value.1)?;
        let (s, start) = self.place(key);
        let _held = self.lock(s)?;
        match self.probe(s, start, key) {
            Probe::Found(i) => {
                self.read_value(s, i, old);
                self.overwrite(s, i, value);
                Ok(true)
            }
            Probe::Vacant(i) => {
                self.publish(s, i, key, value);
                Ok(false)
            }
            Probe::StripeFull => Err(self.full(s)),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let mut out = vec![0; self.value.1];
        Ok(self.get_into(key, &mut out)?.then_some(out))
    }

    /// Copies the value of `key` into `out`; false if it is absent.
    pub fn get_into(&self, key: &[u8], out: &mut [u8]) -> Result<bool, MapError> {
        self.check("key", key, self.key.1)?;
        self.check("value", out, self.value.1)?;
        let (s, start) = self.place(key);
        let _held = self.lock(s)?;
        Ok(match self.probe(s, start, key) {
            Probe::Found(i) => {
                self.read_value(s, i, out);
                true
            }
            _ => false,
        })
    }

    /// Removes `key`; its value, if it was present.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let mut out = vec![0; self.value.1];
        Ok(self.remove_into(key, &mut out)?.then_some(out))
    }

    /// Removes `key`, copying its value into `out`; false if it was absent.
    pub fn remove_into(&self, key: &[u8], out: &mut [u8]) -> Result<bool, MapError> {
        self.check("key", key, self.key.1)?;
        self.check("value", out, self.value.1)?;
        let (s, start) = self.place(key);
        let _held = self.lock(s)?;
        match self.probe(s, start, key) {
            Probe::Found(i) => {
                self.read_value(s, i, out);
                self.unpublish(s, i);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Atomic read-modify-write of one entry (see
    /// [`ShmMap::modify`](super::ShmMap::modify)): `f` gets the current
    /// value (`None` if absent) and a buffer of one value's size; it writes
    /// the new value there and returns true, or returns false to remove the
    /// entry (or leave it absent). Returns what `f` returned.
    pub fn modify(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>, &mut [u8]) -> bool) -> Result<bool, MapError> {
        self.check("key", key, self.key.1)?;
        let (s, start) = self.place(key);
        let _held = self.lock(s)?;
        let probe = self.probe(s, start, key);
        let mut current = vec![0; self.value.1];
        let found = match probe {
            Probe::Found(i) => {
                self.read_value(s, i, &mut current);
                true
            }
            _ => false,
        };
        let mut new = vec![0; self.value.1];
        let keep = {
            let _inside = InModify::enter();
            f(found.then_some(&current[..]), &mut new)
        };
        match (probe, keep) {
            (Probe::Found(i), true) => self.overwrite(s, i, &new),
            (Probe::Found(i), false) => self.unpublish(s, i),
            (Probe::Vacant(i), true) => self.publish(s, i, key, &new),
            (Probe::StripeFull, true) => return Err(self.full(s)),
            (_, false) => {}
        }
        Ok(keep)
    }

    /// Entries now: exact while no operation is under way, otherwise a
    /// moment's count. A stripe whose journal shows an operation under way
    /// is locked for a moment (at most a millisecond), which repairs it if
    /// its writer died mid-operation: a count that a dead writer left
    /// behind is never read as the truth.
    pub fn len(&self) -> usize {
        let mut n = 0;
        for s in 0..self.shape.stripes {
            if self.seg.atomic_u64(self.shape.journal_at(s)).load(Ordering::Acquire) != 0 {
                let _ = self.lock_with(s, Wait::within(Duration::from_millis(1)));
                // repairs, if owner-dead
            }
            // Clamped to the stripe's size: read from memory others write.
            n += (self.count(s).load(Ordering::Acquire) as usize).min(self.shape.slots);
        }
        n
    }

    /// True if [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity asked for at create.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Calls `f(key, value)` on every entry, as one consistent snapshot: it
    /// holds every stripe's lock meanwhile (briefly stopping writers), in
    /// stripe order. `f` may not use this map (or any, on this thread).
    pub fn for_each(&self, f: impl FnMut(&[u8], &[u8])) -> Result<(), MapError> {
        self.for_each_with(self.wait(), f) // one deadline for all the stripes
    }

    /// [`for_each`](Self::for_each), waiting at most `limit` in all for the
    /// stripes' locks whatever this handle's lock timeout
    /// ([`MapError::LockTimeout`] past it): stripes taken stay held while
    /// later ones are waited for, so a snapshot gets through however busy
    /// the writers are.
    pub fn for_each_timeout(&self, limit: Duration, f: impl FnMut(&[u8], &[u8])) -> Result<(), MapError> {
        self.for_each_with(Wait::within(limit), f)
    }

    fn for_each_with(&self, wait: Wait, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), MapError> {
        let held = (0..self.shape.stripes).map(|s| self.lock_with(s, wait)).collect::<Result<Vec<_>, _>>()?;
        let (mut key, mut value) = (vec![0; self.key.1], vec![0; self.value.1]);
        let _inside = InModify::enter();
        for s in 0..self.shape.stripes {
            for i in 0..self.shape.slots {
                if self.state(s, i).load(Ordering::Acquire) == FULL {
                    self.read_into(self.shape.key_at(self.shape.slot_at(s, i)), &mut key);
                    self.read_value(s, i, &mut value);
                    f(&key, &value);
                }
            }
        }
        drop(held);
        Ok(())
    }

    /// Maps every page of the map into this process now, in one call
    /// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+), instead of a page
    /// fault at each first touch: worth it before heavy use of a large map.
    pub fn populate(&self) {
        self.seg.populate();
    }

    /// Waits up to `limit` for lock stripe `stripe` (as a
    /// [`MapError::LockTimeout`] names it) to be free, holding it for no
    /// longer than it takes to repair it if its holder died; true if it
    /// was free in time. For a caller that must not wait inside an
    /// operation, such as a Python binding holding the GIL: it tries with
    /// a zero lock timeout, then waits here with the GIL released.
    pub fn wait_for_stripe(&self, stripe: usize, limit: Duration) -> Result<bool, MapError> {
        if stripe >= self.shape.stripes {
            return Ok(true); // not a stripe of this map: nothing to wait for
        }
        match self.lock_with(stripe, Wait::within(limit)) {
            Ok(_held) => Ok(true),
            Err(MapError::LockTimeout { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// How many times a process found a stripe whose last holder died in
    /// the middle of changing it, and repaired it (undid the unfinished
    /// change and recounted the stripe), over the map's whole life.
    pub fn recoveries(&self) -> u64 {
        self.seg.atomic_u64(RECOVERIES).load(Ordering::Acquire)
    }

    pub(super) fn place(&self, key: &[u8]) -> (usize, usize) {
        self.shape.place(hash(key))
    }

    /// Takes stripe `s`'s lock, repairing the stripe first if its last
    /// holder died.
    pub(super) fn lock(&self, s: usize) -> Result<Held<'_>, MapError> {
        self.lock_with(s, self.wait())
    }

    /// How long a lock may be waited for, from now.
    fn wait(&self) -> Wait {
        match self.wait {
            None => Wait::Forever,
            Some(Duration::ZERO) => Wait::No,
            Some(d) => Wait::within(d),
        }
    }

    fn lock_with(&self, s: usize, wait: Wait) -> Result<Held<'_>, MapError> {
        if IN_MODIFY.get() {
            return Err(MapError::InModify);
        }
        let name = || self.seg.name().to_owned();
        let lock = &self.locks[s];
        match lock.lock_with(wait) {
            Ok(Acquired::Clean) => {}
            Ok(Acquired::OwnerDied) => {
                self.repair(s);
                lock.mark_consistent();
            }
            Err(Failed::Timeout | Failed::WouldBlock) => {
                return Err(MapError::LockTimeout {
                    name: name(),
                    stripe: s,
                    limit: self.wait.unwrap_or(Duration::ZERO),
                });
            }
            // Robust mutexes name their holder by thread id: a process in
            // another PID namespace may hold it under this thread's id.
            Err(Failed::Deadlock) => return Err(MapError::Deadlock { name: name(), stripe: s }),
            Err(Failed::Unrecoverable) => return Err(MapError::Unrecoverable { name: name(), stripe: s }),
        }
        Ok(Held(lock))
    }

    /// Undoes what stripe `s`'s dead holder left unfinished, as its
    /// journal says, and recounts the stripe. Runs with the lock held and
    /// before it is marked consistent: a repairer that dies too leaves the
    /// lock owner-dead again, and the next one repeats the repair.
    fn repair(&self, s: usize) {
        let word = self.seg.atomic_u64(self.shape.journal_at(s)).load(Ordering::Acquire);
        let before = self.count(s).load(Ordering::Acquire);
        if let Some((Op::Overwrite, i)) = table::read_journal(word, self.shape.slots) {
            // The backup was complete before the journal named the slot.
            self.copy(self.shape.backup_at(s), self.shape.value_at(self.shape.slot_at(s, i)), self.value.1);
        }
        // Inserts and removes flip one state word: the slot is either in
        // or out. The count may be behind by one: recount.
        let n = (0..self.shape.slots).filter(|&i| self.state(s, i).load(Ordering::Acquire) == FULL).count() as u64;
        self.count(s).store(n, Ordering::Release);
        self.seg.atomic_u64(self.shape.journal_at(s)).store(0, Ordering::Release);
        if word != 0 || n != before {
            // It died changing the stripe (not just reading it): count it.
            self.seg.atomic_u64(RECOVERIES).fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Looks for `key` in stripe `s` from slot `start` (lock held).
    pub(super) fn probe(&self, s: usize, start: usize, key: &[u8]) -> Probe {
        let mut vacant = None;
        let slots = self.shape.slots;
        for n in 0..slots {
            let i = if start + n < slots { start + n } else { start + n - slots };
            match self.state(s, i).load(Ordering::Acquire) {
                EMPTY => return Probe::Vacant(vacant.unwrap_or(i)),
                FULL if self.key_is(s, i, key) => return Probe::Found(i),
                FULL => {}
                _ => {
                    vacant.get_or_insert(i); // GONE, or scribbled over
                }
            }
        }
        vacant.map_or(Probe::StripeFull, Probe::Vacant)
    }

    /// Fills free slot `i` of stripe `s`; its state word makes it visible last.
    fn publish(&self, s: usize, i: usize, key: &[u8], value: &[u8]) {
        let slot = self.shape.slot_at(s, i);
        self.journal(s, Op::Insert, i);
        self.seg.write(self.shape.key_at(slot), key);
        self.seg.write(self.shape.value_at(slot), value);
        self.state(s, i).store(FULL, Ordering::Release);
        self.bump_count(s, 1);
        self.journal_done(s);
    }

    /// Overwrites the value in slot `i`, its old value backed up first.
    fn overwrite(&self, s: usize, i: usize, value: &[u8]) {
        let at = self.shape.value_at(self.shape.slot_at(s, i));
        self.copy(at, self.shape.backup_at(s), self.value.1);
        self.journal(s, Op::Overwrite, i); // only now may a repair copy the backup back
                                           // A release store keeps earlier writes before it, not later ones
                                           // after it: without this fence the compiler could start writing the
                                           // value first, and a kill in between would leave a torn value with
                                           // nothing to undo it. (No other process reads without the lock, so
                                           // the order in which the hardware shows the stores does not matter.)
        compiler_fence(Ordering::SeqCst);
        self.seg.write(at, value);
        self.journal_done(s);
    }

    /// Marks slot `i` removed. If the slot after it is empty, no probe
    /// goes past `i`, so `i` becomes empty instead, and so do the removed
    /// slots just before it: tombstones do not pile up under churn. Each
    /// step is one store, so a death between steps leaves a correct table.
    fn unpublish(&self, s: usize, i: usize) {
        self.journal(s, Op::Remove, i);
        self.state(s, i).store(GONE, Ordering::Release);
        crate::fault::point("map-before-count");
        self.bump_count(s, -1);
        let slots = self.shape.slots;
        let next = |j: usize| if j + 1 == slots { 0 } else { j + 1 };
        let prev = |j: usize| if j == 0 { slots - 1 } else { j - 1 };
        let is = |j: usize, state: u32| self.state(s, j).load(Ordering::Acquire) == state;
        let mut j = i;
        for _ in 0..slots {
            if !is(j, GONE) || !is(next(j), EMPTY) {
                break;
            }
            self.state(s, j).store(EMPTY, Ordering::Release);
            j = prev(j);
        }
        self.journal_done(s);
    }

    /// Changes stripe `s`'s count by `by`: a load and a store, not an atomic
    /// add, as only the stripe's lock holder writes it (readers of `len`
    /// load it without the lock).
    fn bump_count(&self, s: usize, by: i64) {
        let count = self.count(s);
        count.store(count.load(Ordering::Relaxed).wrapping_add_signed(by), Ordering::Release);
    }

    pub(super) fn journal(&self, s: usize, op: Op, i: usize) {
        self.seg.atomic_u64(self.shape.journal_at(s)).store(table::journal(op, i), Ordering::Release);
    }

    fn journal_done(&self, s: usize) {
        self.seg.atomic_u64(self.shape.journal_at(s)).store(0, Ordering::Release);
    }

    fn full(&self, s: usize) -> MapError {
        MapError::Full {
            name: self.seg.name().to_owned(),
            stripe: s,
            stripes: self.shape.stripes,
            slots: self.shape.slots,
            capacity: self.capacity,
        }
    }

    pub(super) fn state(&self, s: usize, i: usize) -> &AtomicU32 {
        self.seg.atomic_u32(self.shape.slot_at(s, i))
    }

    fn count(&self, s: usize) -> &AtomicU64 {
        self.seg.atomic_u64(self.shape.count_at(s))
    }

    /// True if slot `i` of stripe `s` holds `key` (lock held).
    fn key_is(&self, s: usize, i: usize, key: &[u8]) -> bool {
        let at = self.seg.bytes(self.shape.key_at(self.shape.slot_at(s, i)), key.len());
        // SAFETY: `bytes` checked the key's bytes lie in the data; memcmp
        // reads them through raw pointers (no reference into memory other
        // processes share); the caller holds the stripe's lock, so no shmkit
        // writer changes them meanwhile.
        unsafe { libc::memcmp(at.cast(), key.as_ptr().cast(), key.len()) == 0 }
    }

    /// Copies slot `i`'s value into `out` (lock held).
    fn read_value(&self, s: usize, i: usize, out: &mut [u8]) {
        self.read_into(self.shape.value_at(self.shape.slot_at(s, i)), out);
    }

    /// Copies `out.len()` bytes at `offset` into `out` (lock held).
    fn read_into(&self, offset: usize, out: &mut [u8]) {
        let src = self.seg.bytes(offset, out.len());
        // SAFETY: `bytes` checked the range lies in the data; `out` is
        // ours and distinct from the mapping; raw pointers, no reference
        // into shared memory; the stripe's lock keeps writers out.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
    }

    /// Copies `len` bytes from `from` to `to` within the data (a value and
    /// its stripe's backup, which never overlap).
    fn copy(&self, from: usize, to: usize, len: usize) {
        let (src, dst) = (self.seg.bytes(from, len), self.seg.bytes(to, len));
        // SAFETY: `bytes` checked both ranges lie in the data; a slot's
        // value and a backup are distinct parts of the layout, so they do
        // not overlap; the caller holds the stripe's lock.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
    }
}

/// A held stripe lock, released when dropped (also while unwinding from a
/// panic in a `modify` closure, which changed nothing yet).
pub(super) struct Held<'a>(&'a RawMutex);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// Marks this thread as inside a `modify` closure until dropped.
struct InModify;

impl InModify {
    fn enter() -> InModify {
        IN_MODIFY.set(true);
        InModify
    }
}

impl Drop for InModify {
    fn drop(&mut self) {
        IN_MODIFY.set(false);
    }
}

impl fmt::Debug for DynMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynMap")
            .field("name", &self.seg.name())
            .field("key", &self.key.0)
            .field("value", &self.value.0)
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[] DynMap);

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread that dies holding a stripe's lock in the middle of `work`
    /// (a robust mutex's owner may be a thread: the kernel marks the lock
    /// owner-dead when it exits), as a killed process would.
    fn die_holding(map: &DynMap, s: usize, work: impl FnOnce() + Send) {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    std::mem::forget(map.lock(s).unwrap());
                    work();
                })
                .join()
                .unwrap();
        });
    }

    fn k(n: u64) -> [u8; 8] {
        n.to_le_bytes()
    }

    fn v(n: u64) -> Vec<u8> {
        [n; 4].iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn a_half_done_overwrite_is_rolled_back_and_a_lagging_count_recounted() {
        let map = DynMap::create(&format!("shmkit-unit-map-{}", std::process::id()), "<u8", "(4,)<u8", 10).unwrap();
        map.insert(&k(5), &v(1)).unwrap();
        let (s, start) = map.place(&k(5));
        let Probe::Found(i) = map.probe(s, start, &k(5)) else { panic!("inserted") };
        die_holding(&map, s, || {
            // `overwrite`, stopped half-way through writing the value.
            let at = map.shape.value_at(map.shape.slot_at(s, i));
            map.copy(at, map.shape.backup_at(s), 32);
            map.journal(s, Op::Overwrite, i);
            map.seg.write(at, &[9u8; 12]);
        });
        assert_eq!(map.get(&k(5)).unwrap(), Some(v(1)), "the old value is back, whole");
        assert_eq!(map.recoveries(), 1);
        let (s, start) = map.place(&k(6));
        let Probe::Vacant(j) = map.probe(s, start, &k(6)) else { panic!("6 is not in the map") };
        die_holding(&map, s, || {
            // `publish` of key 6, stopped after its state word, before the count.
            map.journal(s, Op::Insert, j);
            map.seg.write(map.shape.key_at(map.shape.slot_at(s, j)), &k(6));
            map.state(s, j).store(FULL, Ordering::Release);
        });
        assert_eq!(map.get(&k(6)).unwrap(), Some(v(0)), "published before the death: it stays");
        assert_eq!(map.len(), 2, "and the count was redone");
        assert_eq!(map.recoveries(), 2);
    }

    #[test]
    fn removed_slots_become_empty_again_so_probes_stay_short() {
        let map = DynMap::create(&format!("shmkit-unit-tomb-{}", std::process::id()), "<u8", "(4,)<u8", 100).unwrap();
        assert_eq!(map.shape.stripes, 1);
        for round in 0..50u64 {
            (0..60).for_each(|n| assert!(map.insert(&k(round * 1000 + n), &v(n)).unwrap().is_none()));
            (0..60).for_each(|n| assert_eq!(map.remove(&k(round * 1000 + n)).unwrap(), Some(v(n))));
        }
        let left = (0..map.shape.slots).filter(|&i| map.state(0, i).load(Ordering::Acquire) != EMPTY).count();
        assert_eq!(left, 0, "3000 inserts and removes left {left} tombstones");
        assert!(map.is_empty());
    }

    #[test]
    fn wrong_lengths_and_types_are_errors() {
        let map = DynMap::create_unique("|S4", "<f8", 10).unwrap();
        assert!(matches!(map.insert(b"abc", &1f64.to_le_bytes()), Err(MapError::WrongLength { what: "key", .. })));
        assert!(matches!(map.insert(b"abcd", &[0; 4]), Err(MapError::WrongLength { what: "value", .. })));
        assert!(matches!(DynMap::create_unique("<f8", "O", 10), Err(Error::InvalidArgument(_))));
        let other = DynMap::open(map.name()).unwrap();
        assert_eq!((other.key_dtype(), other.value_dtype(), other.key_size()), ("|S4", "<f8", 4));
    }
}
