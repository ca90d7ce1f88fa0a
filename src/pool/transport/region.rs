//! The pool's segment: for each helper, its status word (see `status`) and
//! its two rings (see `ring`): jobs in, results out.
//!
//! ```text
//! 0    magic "SHMKPOOL", helpers: u32, ring bytes: u32      (64 bytes)
//! then per helper: status word, its CPU (64) | skip table (512) | jobs ring | results ring
//! then the passes' claim tables (see `claims`)
//! ```
//!
//! The pool creates it; each helper opens it by the name in its
//! environment and checks everything it reads before use.

use crate::kind::SegmentKind;
use crate::pool::transport::claims::{self, Table};
use crate::pool::transport::ring::{self, Reader, Ring};
use crate::pool::transport::status::{Status, SKIPS};
use crate::segment::{other_head, Segment};
use crate::{name, Error, Result};

const MAGIC: [u8; 8] = *b"SHMKPOOL";
const TOP: usize = 64;
/// The status word's cache line, then the skip table.
const STATUS: usize = 64 + 8 * SKIPS;

/// Bytes of data per ring and direction: 128 KiB, room for a pipeline of
/// chunks of thousands of small arguments. Larger frames go through in
/// pieces; a deeper ring would only let a busy helper's pipeline run
/// further ahead, and cost a pool's start the time to reserve it.
pub(crate) const RING: usize = 128 << 10;

/// A pool's shared segment.
pub(crate) struct Region {
    seg: Segment,
    helpers: usize,
    ring: usize,
}

fn per_helper(ring: usize) -> usize {
    STATUS + 2 * (ring::HEADER + ring)
}

/// The segment's length for `helpers` helpers with rings of `ring` bytes.
fn length(helpers: usize, ring: usize) -> Option<usize> {
    helpers.checked_mul(per_helper(ring))?.checked_add(TOP + claims::TABLES * claims::TABLE_BYTES)
}

impl Region {
    /// Creates the segment for `helpers` helpers, every ring empty. Its
    /// pages are reserved but not mapped here: each helper maps its own.
    pub fn create(helpers: usize) -> Result<Region> {
        let helpers = helpers.max(1);
        let len = length(helpers, RING)
            .ok_or_else(|| Error::InvalidArgument(format!("a pool of {helpers} helpers is too large")))?;
        let mut top = [0u8; TOP];
        top[..8].copy_from_slice(&MAGIC);
        top[8..12].copy_from_slice(&(helpers as u32).to_le_bytes());
        top[12..16].copy_from_slice(&(RING as u32).to_le_bytes());
        let head = other_head(&[]);
        let make = |n: &str| {
            Segment::create_unpopulated(n, SegmentKind::Pool, &head, len, |seg| {
                seg.write(0, &top);
                Ok(())
            })
        };
        Ok(Region { seg: name::retry_unique(make)?, helpers, ring: RING })
    }

    /// Opens a pool's segment in a helper, checking its layout.
    pub fn open(name: &str) -> Result<Region> {
        let seg = Segment::open(name, SegmentKind::Pool)?;
        let bad = |why: String| Error::bad_header(name, why);
        if seg.data_len() < TOP {
            return Err(bad(format!("{} bytes are too few for a pool", seg.data_len())));
        }
        let mut top = [0u8; TOP];
        // SAFETY: `bytes` checked TOP bytes lie in the data; the creator
        // wrote them before publishing the segment and never again.
        unsafe { std::ptr::copy_nonoverlapping(seg.bytes(0, TOP), top.as_mut_ptr(), TOP) };
        let helpers = u32::from_le_bytes(top[8..12].try_into().expect("4 bytes")) as usize;
        let ring = u32::from_le_bytes(top[12..16].try_into().expect("4 bytes")) as usize;
        let fits = length(helpers, ring) == Some(seg.data_len());
        if top[..8] != MAGIC || helpers == 0 || !ring.is_power_of_two() || ring < 4096 || !fits {
            return Err(bad(format!("not a pool layout ({helpers} helpers, {ring}-byte rings)")));
        }
        Ok(Region { seg, helpers, ring })
    }

    /// The segment's name, for the helpers' environment.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    fn base(&self, index: usize) -> Option<usize> {
        (index < self.helpers).then(|| TOP + index * per_helper(self.ring))
    }

    /// Helper `index`'s status word and skip table; `None` past the
    /// segment (an index from the environment is checked like everything else).
    pub fn status(&self, index: usize) -> Option<Status<'_>> {
        self.base(index).map(|b| Status::new(self.seg.atomic_u64(b), self.seg.atomic_u64s(b + 64, SKIPS)))
    }

    /// The CPU helper `index` last began a job on (it writes it; a hint,
    /// never trusted for more than a scheduling choice).
    pub fn cpu(&self, index: usize) -> Option<&std::sync::atomic::AtomicU32> {
        self.base(index).map(|b| self.seg.atomic_u32(b + 8))
    }

    /// Claim table `index`; `None` past the last (an index from a
    /// message is checked like everything else).
    pub fn claims(&self, index: usize) -> Option<Table<'_>> {
        let at = TOP + self.helpers * per_helper(self.ring) + index * claims::TABLE_BYTES;
        (index < claims::TABLES)
            .then(|| Table::new(self.seg.atomic_u64(at), self.seg.atomic_u64s(at + 64, 3 * claims::CHUNKS)))
    }

    /// Helper `index`'s job ring (driver writes, helper reads).
    pub fn jobs(&self, index: usize) -> Option<Ring<'_>> {
        self.base(index).map(|b| Ring::new(&self.seg, b + STATUS, self.ring, Reader::Helper))
    }

    /// Helper `index`'s result ring (helper writes, driver reads).
    pub fn results(&self, index: usize) -> Option<Ring<'_>> {
        self.base(index)
            .map(|b| Ring::new(&self.seg, b + STATUS + ring::HEADER + self.ring, self.ring, Reader::Coordinator))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_find_their_words_and_rings_and_nothing_past_them() {
        let region = Region::create(3).unwrap();
        let other = Region::open(region.name()).unwrap();
        assert!(other.status(3).is_none() && other.jobs(3).is_none());
        let (jobs, results) = (region.jobs(2).unwrap(), other.results(2).unwrap());
        assert_eq!(jobs.write(b"run").unwrap(), 3);
        let mut out = [0u8; 8];
        assert_eq!(other.jobs(2).unwrap().read(&mut out).unwrap(), 3);
        assert_eq!(&out[..3], b"run");
        assert!(results.is_empty(), "each ring on its own");
        region.status(1).unwrap().skip(9);
        assert!(!other.status(1).unwrap().begin(9), "one table, seen by both");
        region.claims(claims::TABLES - 1).unwrap().reset(3, &[0..5, 5..9]);
        assert_eq!(other.claims(claims::TABLES - 1).unwrap().claim(3, 1, 2), Some((0, 0..5)));
        assert!(other.claims(claims::TABLES).is_none());
    }
}
