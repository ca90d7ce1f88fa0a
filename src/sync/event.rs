//! `ShmEvent`: a flag processes wait on, auto- or manual-reset.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::raw::{futex_wait, futex_wake_all, left};
use super::Timeout;
use crate::kind::SegmentKind;
use crate::segment::Segment;
use crate::Result;

const STATE: usize = 0;
const MODE: usize = 4;
const LEN: usize = 8;

/// What a successful wait does to the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventMode {
    /// Stays set until [`ShmEvent::reset`]: every waiter that looks while
    /// it is set passes (a `set` undone by a `reset` at once may be missed
    /// by a waiter that had not looked yet).
    Manual,
    /// Each set lets exactly one waiter pass, and resets.
    Auto,
}

/// An event in a named segment. Holds no lock, so a process that dies
/// while waiting or setting leaves nothing stuck.
///
/// ```
/// use shmkit::sync::{EventMode, ShmEvent};
/// # let name = format!("shmkit-doc-event-{}", std::process::id());
/// let ready = ShmEvent::create(&name, EventMode::Manual)?;
/// assert!(ready.wait_timeout(std::time::Duration::from_millis(10)).is_err());
/// ready.set();
/// ShmEvent::open(&name)?.wait(); // returns at once
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ShmEvent {
    seg: Segment,
}

impl ShmEvent {
    /// Creates event segment `name`, not set.
    pub fn create(name: &str, mode: EventMode) -> Result<Self> {
        let seg = super::create(name, SegmentKind::Event, &[], LEN, |seg| {
            seg.atomic_u32(MODE).store(u32::from(mode == EventMode::Auto), Ordering::Relaxed);
        })?;
        Ok(ShmEvent { seg })
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique(mode: EventMode) -> Result<Self> {
        crate::name::retry_unique(|n| Self::create(n, mode))
    }

    /// Opens event segment `name`.
    pub fn open(name: &str) -> Result<Self> {
        Ok(ShmEvent { seg: super::open(name, SegmentKind::Event, &[], |len| len == LEN)? })
    }

    fn state(&self) -> &AtomicU32 {
        self.seg.atomic_u32(STATE)
    }

    /// The event's mode.
    pub fn mode(&self) -> EventMode {
        match self.seg.atomic_u32(MODE).load(Ordering::Relaxed) {
            0 => EventMode::Manual,
            _ => EventMode::Auto,
        }
    }

    /// Sets the event and wakes waiters. (A setter killed between the two
    /// steps delays its waiters by a moment, not for good: every sleep is
    /// capped, and waiters look again.)
    pub fn set(&self) {
        self.state().store(1, Ordering::Release);
        crate::fault::point("event-set-before-wake");
        futex_wake_all(self.state());
    }

    /// Clears the event.
    pub fn reset(&self) {
        self.state().store(0, Ordering::Release);
    }

    /// True while set.
    pub fn is_set(&self) -> bool {
        self.state().load(Ordering::Acquire) == 1
    }

    /// Passes if set (taking it, for an auto-reset event); never waits.
    pub fn try_wait(&self) -> bool {
        match self.mode() {
            EventMode::Manual => self.is_set(),
            EventMode::Auto => self.state().compare_exchange(1, 0, Ordering::AcqRel, Ordering::Acquire).is_ok(),
        }
    }

    /// Waits until the event is set.
    pub fn wait(&self) {
        let _ = self.wait_until(None);
    }

    /// Waits at most `limit` for the event.
    pub fn wait_timeout(&self, limit: Duration) -> Result<(), Timeout> {
        self.wait_until(super::deadline(limit))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<(), Timeout> {
        loop {
            if self.try_wait() {
                return Ok(());
            }
            let left = left(deadline);
            if left == Some(Duration::ZERO) {
                return Err(Timeout);
            }
            futex_wait(self.state(), 0, left);
        }
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[] ShmEvent);
