//! `ShmBarrier`: N processes meet before any goes on.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::raw::{futex_wait, futex_wake_all, left};
use super::Timeout;
use crate::kind::SegmentKind;
use crate::segment::Segment;
use crate::{Error, Result};

/// One word: generation in the high 16 bits, arrivals in the low 16, so a
/// waiter that times out can take its arrival back atomically.
const WORD: usize = 0;
const PARTIES: usize = 4;
const LEN: usize = 8;

/// A barrier for a fixed number of processes, in a named segment: for
/// iterative algorithms, every helper finishes step k before any starts
/// step k + 1. Holds no lock; a participant that dies makes the others'
/// `wait_timeout` fail rather than hang (use it when that can happen).
pub struct ShmBarrier {
    seg: Segment,
    /// Read (and checked) once: another process scribbling over the
    /// segment cannot change how many arrivals open the barrier here.
    parties: u32,
}

/// What [`ShmBarrier::wait`] tells a participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult {
    /// True for exactly one participant per generation: the last to arrive.
    pub is_leader: bool,
}

impl ShmBarrier {
    /// Creates barrier segment `name` for `parties` participants (1 to 65535).
    pub fn create(name: &str, parties: u32) -> Result<Self> {
        if parties == 0 || parties > 0xffff {
            return Err(Error::InvalidArgument(format!("a barrier needs 1 to 65535 parties, not {parties}")));
        }
        let seg = super::create(name, SegmentKind::Barrier, &[], LEN, |seg| {
            seg.atomic_u32(PARTIES).store(parties, Ordering::Relaxed);
        })?;
        Ok(ShmBarrier { seg, parties })
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(parties: u32) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, parties))
    }

    /// Opens barrier segment `name`.
    pub fn open(name: &str) -> Result<Self> {
        let seg = super::open(name, SegmentKind::Barrier, &[], |len| len == LEN)?;
        let parties = seg.atomic_u32(PARTIES).load(Ordering::Relaxed);
        if parties == 0 || parties > 0xffff {
            return Err(Error::bad_header(name, format!("barrier with {parties} parties")));
        }
        Ok(ShmBarrier { seg, parties })
    }

    /// Number of participants.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    fn word(&self) -> &AtomicU32 {
        self.seg.atomic_u32(WORD)
    }

    /// Waits until all participants have arrived.
    pub fn wait(&self) -> BarrierWaitResult {
        self.wait_until(None).expect("no deadline, no timeout")
    }

    /// Waits at most `limit`; on timeout this arrival is taken back, so
    /// the barrier stays usable.
    pub fn wait_timeout(&self, limit: Duration) -> Result<BarrierWaitResult, Timeout> {
        self.wait_until(super::deadline(limit))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<BarrierWaitResult, Timeout> {
        let (word, parties) = (self.word(), self.parties());
        // Arrive and, for the last arrival, open the barrier in the same
        // atomic step: a waiter's take-back (below) then either happens
        // before the opening or fails, never after an arrival it undoes.
        // `now + 1` never carries into the generation: it runs only while
        // arrivals are below `parties`, which is at most 0xffff.
        let arrive = |now: u32| {
            let (generation, arrived) = (now >> 16, (now & 0xffff) + 1);
            Some(if arrived >= parties { ((generation + 1) & 0xffff) << 16 } else { now + 1 })
        };
        let before = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, arrive).expect("always updates");
        let generation = before >> 16;
        if (before & 0xffff) + 1 >= parties {
            crate::fault::point("barrier-open-before-wake");
            futex_wake_all(word);
            return Ok(BarrierWaitResult { is_leader: true });
        }
        loop {
            let now = word.load(Ordering::Acquire);
            if now >> 16 != generation {
                return Ok(BarrierWaitResult { is_leader: false });
            }
            let left = left(deadline);
            if left == Some(Duration::ZERO) {
                // Take the arrival back, unless the barrier opened meanwhile
                // (or another process scribbled a zero count over the word).
                if now & 0xffff == 0 {
                    return Err(Timeout);
                }
                match word.compare_exchange(now, now - 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Err(Timeout),
                    Err(_) => continue,
                }
            }
            futex_wait(word, now, left);
        }
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[] ShmBarrier);
