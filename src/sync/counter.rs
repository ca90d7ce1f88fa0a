//! `ShmCounter`: an atomic 64-bit counter shared by processes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::kind::SegmentKind;
use crate::segment::Segment;
use crate::Result;

/// An atomic `u64` in a named segment.
///
/// ```
/// # let name = format!("shmkit-doc-counter-{}", std::process::id());
/// let done = shmkit::sync::ShmCounter::create(&name, 0)?;
/// done.add(5);
/// assert_eq!(shmkit::sync::ShmCounter::open(&name)?.get(), 5);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ShmCounter {
    seg: Segment,
}

impl ShmCounter {
    /// Creates counter segment `name` starting at `value`.
    pub fn create(name: &str, value: u64) -> Result<Self> {
        let init = |s: &Segment| s.atomic_u64(0).store(value, Ordering::Relaxed);
        let seg = super::create(name, SegmentKind::Counter, &[], 8, init)?;
        Ok(ShmCounter { seg })
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(value: u64) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, value))
    }

    /// Opens counter segment `name`.
    pub fn open(name: &str) -> Result<Self> {
        Ok(ShmCounter { seg: super::open(name, SegmentKind::Counter, &[], |len| len == 8)? })
    }

    fn cell(&self) -> &AtomicU64 {
        self.seg.atomic_u64(0)
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.cell().load(Ordering::Acquire)
    }

    /// Sets the value.
    pub fn set(&self, value: u64) {
        self.cell().store(value, Ordering::Release);
    }

    /// Adds `n` (wrapping) and returns the previous value.
    pub fn add(&self, n: u64) -> u64 {
        self.cell().fetch_add(n, Ordering::AcqRel)
    }

    /// Subtracts `n` (wrapping) and returns the previous value.
    pub fn sub(&self, n: u64) -> u64 {
        self.cell().fetch_sub(n, Ordering::AcqRel)
    }

    /// Stores `new` if the value is `current`; returns the previous value either way.
    pub fn compare_exchange(&self, current: u64, new: u64) -> Result<u64, u64> {
        self.cell().compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[] ShmCounter);
