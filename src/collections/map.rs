//! `ShmMap<K, V>`: a hash map in a named segment, with striped robust locks
//! and a per-stripe journal, so a writer that dies mid-operation is undone
//! by whoever takes its stripe next.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{compiler_fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::error::MapError;
use super::header::{Head, Magic, RECOVERIES};
use super::table::{self, hash, Op, Shape, EMPTY, FULL, GONE};
use crate::kind::SegmentKind;
use crate::segment::{other_head, Segment};
use crate::sync::raw::{Acquired, Failed, RawMutex, Wait, MUTEX_SIZE};
use crate::{Error, Record, Result};

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
    seg: Segment,
    shape: Shape,
    locks: Vec<RawMutex>,
    capacity: usize,
    wait: Option<Duration>,
    _types: Types<K, V>,
}

/// Marks the key and value types without owning any (`Send` and `Sync`
/// whatever they are: the map holds bytes, copied in and out).
type Types<K, V> = PhantomData<fn(K, V) -> (K, V)>;

thread_local! {
    /// True while this thread runs an `modify` closure, which holds a
    /// stripe lock: any map operation then could deadlock, so it fails.
    static IN_UPDATE: Cell<bool> = const { Cell::new(false) };
}

/// Where a key is, or could go, in its stripe.
enum Probe {
    Found(usize),
    Vacant(usize),
    StripeFull,
}

impl<K: Record, V: Record> ShmMap<K, V> {
    /// Creates map segment `name` for `capacity` entries. Keys are spread
    /// over stripes by a fixed hash, and each stripe has room for its
    /// share plus a margin (about 1.3× for large maps), so keys of any
    /// ordinary kind fit `capacity` and usually more; keys crafted to
    /// collide (the hash is not keyed) fill one stripe early, which then
    /// reports [`MapError::Full`].
    pub fn create(name: &str, capacity: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::InvalidArgument("a map needs a capacity of at least 1".into()));
        }
        let too_big = || Error::InvalidArgument(format!("a map of {capacity} entries of this size overflows"));
        let shape = Shape::for_capacity(capacity, size_of::<K>(), size_of::<V>()).ok_or_else(too_big)?;
        let head = Self::head(capacity as u64, &shape);
        let seg = Segment::create(name, SegmentKind::Map, &other_head(&Self::types()?), shape.len, |seg| {
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
        Ok(Self::attach(seg, shape, capacity))
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(capacity: usize) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, capacity))
    }

    /// Opens map segment `name`, which must hold keys `K` and values `V`
    /// (by their numpy dtypes: [`Error::WrongType`] otherwise).
    pub fn open(name: &str) -> Result<Self> {
        let seg = Segment::open(name, SegmentKind::Map)?;
        seg.check_types(&Self::types()?)?;
        let want = Self::head(0, &Shape::new(1, 1, size_of::<K>(), size_of::<V>()).expect("a valid shape"));
        let found = Head::read_checked(&seg, &want)?;
        let shape = Shape::new(found.stripes as usize, found.slots as usize, size_of::<K>(), size_of::<V>());
        let shape = shape.filter(|s| s.len == seg.data_len()).ok_or_else(|| {
            let why =
                format!("{} stripes of {} slots do not fill its {} bytes", found.stripes, found.slots, seg.data_len());
            Error::bad_header(name, why)
        })?;
        let capacity = usize::try_from(found.capacity).unwrap_or(usize::MAX);
        Ok(Self::attach(seg, shape, capacity))
    }

    fn types() -> Result<[(&'static str, String); 2]> {
        Ok([("key", crate::npy::record::dtype_of::<K>()?), ("value", crate::npy::record::dtype_of::<V>()?)])
    }

    fn head(capacity: u64, shape: &Shape) -> Head {
        Head {
            magic: Magic::Map,
            capacity,
            key_size: size_of::<K>() as u32,
            value_size: size_of::<V>() as u32,
            stripes: shape.stripes as u32,
            slots: shape.slots as u32,
        }
    }

    fn attach(seg: Segment, shape: Shape, capacity: usize) -> Self {
        let locks = (0..shape.stripes)
            // SAFETY: the segment is a map (its kind was checked at open, or
            // this process just made it), whose creator initialised every
            // stripe's mutex before publishing it; `shape` matches the
            // segment's length, so `bytes` finds each inside the data,
            // 64-aligned; `locks` lives beside `seg`, which keeps it mapped.
            .map(|s| unsafe { RawMutex::attach(seg.bytes(shape.mutex_at(s), MUTEX_SIZE)) })
            .collect();
        ShmMap { seg, shape, locks, capacity, wait: None, _types: PhantomData }
    }

    /// This handle, with every operation giving up with
    /// [`MapError::LockTimeout`] if a stripe's lock stays held longer than
    /// `limit` (by a stopped process, say). Without it they wait.
    pub fn with_lock_timeout(mut self, limit: Duration) -> Self {
        self.wait = Some(limit);
        self
    }

    /// Inserts `key → value`; returns the value it replaced, if any.
    /// [`MapError::Full`] if the key's stripe has no free slot.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, MapError> {
        let (s, start) = self.place(&key);
        let _held = self.lock(s)?;
        match self.probe(s, start, &key) {
            Probe::Found(i) => {
                let old = self.value(s, i);
                self.overwrite(s, i, &value);
                Ok(Some(old))
            }
            Probe::Vacant(i) => {
                self.publish(s, i, &key, &value);
                Ok(None)
            }
            Probe::StripeFull => Err(self.full(s)),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &K) -> Result<Option<V>, MapError> {
        let (s, start) = self.place(key);
        let _held = self.lock(s)?;
        Ok(match self.probe(s, start, key) {
            Probe::Found(i) => Some(self.value(s, i)),
            _ => None,
        })
    }

    /// True if `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool, MapError> {
        Ok(self.get(key)?.is_some())
    }

    /// Removes `key`; returns its value, if it was present.
    pub fn remove(&self, key: &K) -> Result<Option<V>, MapError> {
        let (s, start) = self.place(key);
        let _held = self.lock(s)?;
        match self.probe(s, start, key) {
            Probe::Found(i) => {
                let old = self.value(s, i);
                self.unpublish(s, i);
                Ok(Some(old))
            }
            _ => Ok(None),
        }
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
        let (s, start) = self.place(&key);
        let _held = self.lock(s)?;
        let probe = self.probe(s, start, &key);
        let current = match probe {
            Probe::Found(i) => Some(self.value(s, i)),
            _ => None,
        };
        let new = {
            let _inside = InModify::enter();
            f(current)
        };
        match (probe, new) {
            (Probe::Found(i), Some(v)) => self.overwrite(s, i, &v),
            (Probe::Found(i), None) => self.unpublish(s, i),
            (Probe::Vacant(i), Some(v)) => self.publish(s, i, &key, &v),
            (Probe::StripeFull, Some(_)) => return Err(self.full(s)),
            (_, None) => {}
        }
        Ok(new)
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

    /// Every entry, as one consistent snapshot: it holds every stripe's
    /// lock while it copies (briefly stopping writers), in stripe order.
    pub fn snapshot(&self) -> Result<Vec<(K, V)>, MapError> {
        let wait = self.wait(); // one deadline for all the stripes
        let held = (0..self.shape.stripes).map(|s| self.lock_with(s, wait)).collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(self.len());
        for s in 0..self.shape.stripes {
            for i in 0..self.shape.slots {
                if self.state(s, i).load(Ordering::Acquire) == FULL {
                    out.push((self.read::<K>(self.shape.key_at(self.shape.slot_at(s, i))), self.value(s, i)));
                }
            }
        }
        drop(held);
        Ok(out)
    }

    /// Maps every page of the map into this process now, in one call
    /// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+), instead of a page
    /// fault at each first touch: worth it before heavy use of a large map.
    pub fn populate(&self) {
        self.seg.populate();
    }

    /// How many times a process found a stripe whose last holder died in
    /// the middle of changing it, and repaired it (undid the unfinished
    /// change and recounted the stripe), over the map's whole life.
    pub fn recoveries(&self) -> u64 {
        self.seg.atomic_u64(RECOVERIES).load(Ordering::Acquire)
    }

    fn place(&self, key: &K) -> (usize, usize) {
        self.shape.place(hash(bytemuck::bytes_of(key)))
    }

    /// Takes stripe `s`'s lock, repairing the stripe first if its last
    /// holder died.
    fn lock(&self, s: usize) -> Result<Held<'_>, MapError> {
        self.lock_with(s, self.wait())
    }

    /// How long a lock may be waited for, from now.
    fn wait(&self) -> Wait {
        match self.wait {
            None => Wait::Forever,
            Some(d) => Wait::within(d),
        }
    }

    fn lock_with(&self, s: usize, wait: Wait) -> Result<Held<'_>, MapError> {
        if IN_UPDATE.get() {
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
            self.copy(self.shape.backup_at(s), self.shape.value_at(self.shape.slot_at(s, i)), size_of::<V>());
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
    fn probe(&self, s: usize, start: usize, key: &K) -> Probe {
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
    fn publish(&self, s: usize, i: usize, key: &K, value: &V) {
        let slot = self.shape.slot_at(s, i);
        self.journal(s, Op::Insert, i);
        self.seg.write(self.shape.key_at(slot), bytemuck::bytes_of(key));
        self.seg.write(self.shape.value_at(slot), bytemuck::bytes_of(value));
        self.state(s, i).store(FULL, Ordering::Release);
        self.bump_count(s, 1);
        self.journal_done(s);
    }

    /// Overwrites the value in slot `i`, its old value backed up first.
    fn overwrite(&self, s: usize, i: usize, value: &V) {
        let at = self.shape.value_at(self.shape.slot_at(s, i));
        self.copy(at, self.shape.backup_at(s), size_of::<V>());
        self.journal(s, Op::Overwrite, i); // only now may a repair copy the backup back
                                           // A release store keeps earlier writes before it, not later ones
                                           // after it: without this fence the compiler could start writing the
                                           // value first, and a kill in between would leave a torn value with
                                           // nothing to undo it. (No other process reads without the lock, so
                                           // the order in which the hardware shows the stores does not matter.)
        compiler_fence(Ordering::SeqCst);
        self.seg.write(at, bytemuck::bytes_of(value));
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

    fn journal(&self, s: usize, op: Op, i: usize) {
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

    fn state(&self, s: usize, i: usize) -> &AtomicU32 {
        self.seg.atomic_u32(self.shape.slot_at(s, i))
    }

    fn count(&self, s: usize) -> &AtomicU64 {
        self.seg.atomic_u64(self.shape.count_at(s))
    }

    fn key_is(&self, s: usize, i: usize, key: &K) -> bool {
        bytemuck::bytes_of(&self.read::<K>(self.shape.key_at(self.shape.slot_at(s, i)))) == bytemuck::bytes_of(key)
    }

    fn value(&self, s: usize, i: usize) -> V {
        self.read(self.shape.value_at(self.shape.slot_at(s, i)))
    }

    /// A copy of the `T` at `offset` (unaligned: slots are packed).
    fn read<T: bytemuck::Pod>(&self, offset: usize) -> T {
        // SAFETY: `bytes` checked that size_of::<T>() bytes at `offset` lie
        // in the data; any bytes are a valid T (Pod); callers hold the lock
        // of the stripe they read, so no shmkit writer changes them meanwhile.
        unsafe { self.seg.bytes(offset, size_of::<T>()).cast::<T>().read_unaligned() }
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
/// panic in an `modify` closure, which changed nothing yet).
struct Held<'a>(&'a RawMutex);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// Marks this thread as inside an `modify` closure until dropped.
struct InModify;

impl InModify {
    fn enter() -> InModify {
        IN_UPDATE.set(true);
        InModify
    }
}

impl Drop for InModify {
    fn drop(&mut self) {
        IN_UPDATE.set(false);
    }
}

impl<K: Record, V: Record> fmt::Debug for ShmMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmMap")
            .field("name", &self.seg.name())
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("stripes", &self.shape.stripes)
            .finish()
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[K: Record, V: Record] ShmMap<K, V>);

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread that dies holding a stripe's lock in the middle of `work`
    /// (a robust mutex's owner may be a thread: the kernel marks the lock
    /// owner-dead when it exits), as a killed process would.
    fn die_holding(map: &ShmMap<u64, [u64; 4]>, s: usize, work: impl FnOnce() + Send) {
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

    #[test]
    fn a_half_done_overwrite_is_rolled_back_and_a_lagging_count_recounted() {
        let map = ShmMap::<u64, [u64; 4]>::create(&format!("shmkit-unit-map-{}", std::process::id()), 10).unwrap();
        map.insert(5, [1; 4]).unwrap();
        let (s, start) = map.place(&5);
        let Probe::Found(i) = map.probe(s, start, &5) else { panic!("inserted") };
        die_holding(&map, s, || {
            // `overwrite`, stopped half-way through writing the value.
            let at = map.shape.value_at(map.shape.slot_at(s, i));
            map.copy(at, map.shape.backup_at(s), 32);
            map.journal(s, Op::Overwrite, i);
            map.seg.write(at, &[9u8; 12]);
        });
        assert_eq!(map.get(&5).unwrap(), Some([1; 4]), "the old value is back, whole");
        assert_eq!(map.recoveries(), 1);
        let (s, start) = map.place(&6);
        let Probe::Vacant(j) = map.probe(s, start, &6) else { panic!("6 is not in the map") };
        die_holding(&map, s, || {
            // `publish` of key 6, stopped after its state word, before the count.
            map.journal(s, Op::Insert, j);
            map.seg.write(map.shape.key_at(map.shape.slot_at(s, j)), bytemuck::bytes_of(&6u64));
            map.state(s, j).store(FULL, Ordering::Release);
        });
        assert_eq!(map.get(&6).unwrap(), Some([0; 4]), "published before the death: it stays");
        assert_eq!(map.len(), 2, "and the count was redone");
        assert_eq!(map.recoveries(), 2);
    }

    #[test]
    fn removed_slots_become_empty_again_so_probes_stay_short() {
        let map = ShmMap::<u64, [u64; 4]>::create(&format!("shmkit-unit-tomb-{}", std::process::id()), 100).unwrap();
        assert_eq!(map.shape.stripes, 1);
        for round in 0..50u64 {
            (0..60).for_each(|k| assert!(map.insert(round * 1000 + k, [k; 4]).unwrap().is_none()));
            (0..60).for_each(|k| assert_eq!(map.remove(&(round * 1000 + k)).unwrap(), Some([k; 4])));
        }
        let left = (0..map.shape.slots).filter(|&i| map.state(0, i).load(Ordering::Acquire) != EMPTY).count();
        assert_eq!(left, 0, "3000 inserts and removes left {left} tombstones");
        assert!(map.is_empty());
    }
}
