//! `DynSubscriber`: a subscriber's engine, its dtype chosen at run time:
//! samples are taken as slot indexes and let go by hold number;
//! [`Subscriber`](super::Subscriber) is its typed face, and bindings to
//! other languages use it directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::control::{Core, Look, IN_ORDER, LATEST};
use super::error::{RecvError, RecvTimeoutError, Stop, TryRecvError};
use crate::npy::dtype::DType;
use crate::sync::raw::left;
use crate::sync::spin::{spin, WINDOW};
use crate::{Error, Result};

/// How long a waiting subscriber sleeps before it looks whether the
/// publisher is still alive.
const LOOK: Duration = Duration::from_millis(50);

/// How long a publisher seen alive is believed alive: a subscriber
/// polling `try_next` in a loop looks it up (a syscall) once per period,
/// not once per poll, and hears of its death this much later at most.
const BELIEVED: Duration = Duration::from_millis(1);

/// A stream's subscriber whose dtype is chosen at run time. Everything
/// [`Subscriber`](super::Subscriber) promises holds here too. Safe to
/// share between threads (one call takes a sample at a time).
pub struct DynSubscriber {
    pub(super) core: Core,
    me: usize,
    /// Which of this subscriber's holds are in use, one bit each.
    holds: AtomicU64,
    /// The sequence number of the last sample this handle got.
    last: AtomicU64,
    reading: Mutex<()>,
    /// When the publisher was last seen alive: nanoseconds after `born`,
    /// plus one (0: never).
    alive_at: AtomicU64,
    born: Instant,
}

/// A sample taken by a [`DynSubscriber`]: in slot `slot`, numbered `seq`,
/// `missed` skipped before it; held (through hold `hold`) until
/// [`release`](DynSubscriber::release)d.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a taken sample holds its slot until released"]
pub struct Taken {
    /// The slot it is in.
    pub slot: usize,
    /// Its sequence number.
    pub seq: u64,
    /// Samples skipped before it.
    pub missed: u64,
    /// The hold to release.
    pub hold: usize,
}

impl DynSubscriber {
    /// Subscribes to stream `name`: [`next`](Self::next) gives the samples
    /// published from now on, in order. Dtype and rank must match.
    pub fn open(name: &str) -> Result<Self> {
        let core = Core::open(name)?;
        core.seg.check_process()?;
        let max = core.cfg.subscribers;
        let me = core.subscribers.take_patiently(&core.seg).ok_or_else(|| Error::TooManyHandles {
            name: name.to_owned(),
            what: "subscribers",
            max,
        })?;
        // The record may be a departed subscriber's: start it afresh, first
        // holding the publisher back from every sample, so that none
        // published between reading `newest` and setting the cursor is
        // reused before this subscriber reads it.
        core.cursor(me).store(0, Ordering::SeqCst);
        core.dropped(me).store(0, Ordering::SeqCst);
        core.mode(me).store(IN_ORDER, Ordering::SeqCst);
        for j in 0..core.cfg.holds {
            core.hold(me, j).store(0, Ordering::SeqCst);
        }
        let last = core.newest();
        core.cursor(me).store(last + 1, Ordering::SeqCst);
        core.freed();
        let (holds, last) = (AtomicU64::new(0), AtomicU64::new(last));
        let (alive_at, born) = (AtomicU64::new(0), Instant::now());
        Ok(DynSubscriber { core, me, holds, last, reading: Mutex::new(()), alive_at, born })
    }

    /// Like [`open`](Self::open), waiting up to `limit` for the stream to
    /// be created, so that programs may start in any order.
    pub fn open_timeout(name: &str, limit: Duration) -> Result<Self> {
        let deadline = Instant::now().checked_add(limit);
        loop {
            match Self::open(name) {
                Err(Error::NotFound { .. }) if left(deadline).is_none_or(|l| !l.is_zero()) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => return other,
            }
        }
    }

    /// One call takes a sample at a time on a handle: its cursor and its
    /// holds are its own (a sample is let go from any thread, atomically).
    fn one_reader(&self) -> MutexGuard<'_, ()> {
        self.reading.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets go of a sample's slot (hold `hold` of a [`Taken`]); nothing in
    /// a forked child: the hold is its parent's, which may still read it.
    pub fn release(&self, hold: usize) {
        if self.core.seg.check_process().is_err() || hold >= self.core.cfg.holds {
            return;
        }
        self.core.hold(self.me, hold).store(0, Ordering::SeqCst);
        self.holds.fetch_and(!(1 << hold), Ordering::SeqCst);
        self.core.freed();
    }

    /// The first byte of slot `k` (C order, `sample_bytes` long, aligned
    /// for the dtype). Read only a slot a [`Taken`] of this handle holds,
    /// and only until it is released.
    pub fn slot_ptr(&self, k: usize) -> *const u8 {
        self.core.frame_ptr(k).cast_const()
    }

    /// `Err(Inherited)` in a child forked from the process that opened
    /// it: the handle's holds are its parent's.
    pub fn check_process(&self) -> Result<()> {
        self.core.seg.check_process()
    }

    /// The samples' dtype.
    pub fn dtype(&self) -> DType {
        self.core.dtype
    }

    /// Bytes of one sample.
    pub fn sample_bytes(&self) -> usize {
        self.core.frame_bytes
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        self.core.seg.name()
    }

    /// A sample's shape.
    pub fn shape(&self) -> &[usize] {
        &self.core.frame
    }

    /// The next sample in order (the one after the last this handle got),
    /// waiting for it. On an `Overwrite` stream it may have been replaced:
    /// then the oldest one after it, and [`Taken::missed`] says how many
    /// were skipped. After the stream's end, every sample published before
    /// it, then [`RecvError::Ended`] (or `PublisherDied`).
    pub fn next(&self) -> Result<Taken, RecvError> {
        self.next_until(None, false).map_err(RecvError::from)
    }

    /// The next sample in order if it is there now.
    pub fn try_next(&self) -> Result<Taken, TryRecvError> {
        self.next_until(None, true).map_err(TryRecvError::from)
    }

    /// The next sample in order, waiting at most `limit`.
    pub fn next_timeout(&self, limit: Duration) -> Result<Taken, RecvTimeoutError> {
        self.next_until(Instant::now().checked_add(limit), false).map_err(RecvTimeoutError::from)
    }

    /// The newest sample (waiting for a first one), perhaps one this handle
    /// got before ([`Taken::seq`] tells). From then on this handle holds
    /// no `Block` publisher back, until `next` is called again, which goes
    /// on after this sample.
    pub fn latest(&self) -> Result<Taken, RecvError> {
        self.latest_until(None).map_err(RecvError::from)
    }

    /// As [`latest`](Self::latest), waiting at most `limit` for a first sample.
    pub fn latest_timeout(&self, limit: Duration) -> Result<Taken, RecvTimeoutError> {
        self.latest_until(Instant::now().checked_add(limit)).map_err(RecvTimeoutError::from)
    }

    fn latest_until(&self, deadline: Option<Instant>) -> Result<Taken, Stop> {
        // Before the lock: in a forked child it may be held for good by a
        // thread the fork did not copy.
        self.core.seg.check_process().map_err(|_| Stop::Inherited)?;
        let _one = self.one_reader();
        let j = self.prepare()?;
        if self.core.mode(self.me).swap(LATEST, Ordering::SeqCst) != LATEST {
            self.core.freed();
        }
        let mut tries = 0u32;
        loop {
            let n = self.core.newest();
            // One seen already is given again while the stream lives; after
            // its end, the end is told instead. A number no slot holds (a
            // taken-over stream before its first publish) is nothing yet.
            let here = (0..self.core.cfg.slots).find(|&k| self.core.seq_in(k) == Some(n));
            if let Some(k) = here.filter(|_| n > self.last.load(Ordering::SeqCst) || self.check_end(n + 1).is_ok()) {
                match self.take_at(j, k, n, 0, &mut tries) {
                    Ok(sample) => return Ok(sample),
                    Err(()) => continue, // replaced meanwhile: the newest is newer
                }
            }
            self.check_end(n + 1)?;
            self.wait(n + 1, deadline)?;
        }
    }

    fn next_until(&self, deadline: Option<Instant>, once: bool) -> Result<Taken, Stop> {
        // Before the lock: in a forked child it may be held for good by a
        // thread the fork did not copy.
        self.core.seg.check_process().map_err(|_| Stop::Inherited)?;
        let _one = self.one_reader();
        let j = self.prepare()?;
        let core = &self.core;
        if core.mode(self.me).load(Ordering::SeqCst) == LATEST {
            core.cursor(self.me).store(self.last.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
            core.mode(self.me).store(IN_ORDER, Ordering::SeqCst);
        }
        let mut tries = 0u32;
        loop {
            let want = core.cursor(self.me).load(Ordering::SeqCst);
            if want <= core.newest() {
                if let Some((k, seq)) = self.oldest_from(want) {
                    if let Ok(sample) = self.take_at(j, k, seq, seq - want, &mut tries) {
                        return Ok(sample);
                    }
                }
                // Being claimed or written: look again, within the call's limits.
                if tries % 64 == 63 && (once || left(deadline).is_some_and(|l| l.is_zero())) {
                    return Err(if once { Stop::Empty } else { Stop::Timeout });
                }
                std::thread::yield_now();
                continue;
            }
            self.check_end(want)?;
            if once && core.newest() < want {
                return Err(Stop::Empty);
            }
            self.wait(want, deadline)?;
        }
    }

    /// Checks the handle and finds a free hold; a dropped subscriber hears
    /// it here, once, and goes on from the newest sample.
    fn prepare(&self) -> Result<usize, Stop> {
        let core = &self.core;
        core.seg.check_process().map_err(|_| Stop::Inherited)?;
        if core.dropped(self.me).load(Ordering::SeqCst) != 0 {
            // Held back from everything first, then from what is published
            // after `newest` is read: a sample published meanwhile is kept.
            core.cursor(self.me).store(0, Ordering::SeqCst);
            core.dropped(self.me).store(0, Ordering::SeqCst);
            core.cursor(self.me).store(core.newest() + 1, Ordering::SeqCst);
            core.freed();
            return Err(Stop::Dropped);
        }
        let used = self.holds.load(Ordering::SeqCst);
        (0..self.core.cfg.holds).find(|&j| used & (1 << j) == 0).ok_or(Stop::TooManySamples)
    }

    /// The slot holding the oldest sample numbered `from` or later.
    fn oldest_from(&self, from: u64) -> Option<(usize, u64)> {
        (0..self.core.cfg.slots)
            .filter_map(|k| self.core.seq_in(k).filter(|&s| s >= from).map(|s| (k, s)))
            .min_by_key(|&(_, s)| s)
    }

    /// Holds sample `seq` in slot `k` through hold `j` (the handshake in
    /// `control`); `Err` if the publisher is reusing the slot. A slot the
    /// publisher claimed and died with still holds its sample intact: it is
    /// taken once the publisher is seen dead (looked at every 64 `tries`).
    fn take_at(&self, j: usize, k: usize, seq: u64, missed: u64, tries: &mut u32) -> Result<Taken, ()> {
        let core = &self.core;
        core.hold(self.me, j).store(seq, Ordering::SeqCst);
        let held = match core.second_look(k, seq) {
            Look::Held => true,
            Look::Claimed => {
                *tries += 1;
                *tries % 64 == 0 && !core.publisher_alive()
            }
            Look::Gone => false,
        };
        if !held {
            core.hold(self.me, j).store(0, Ordering::SeqCst);
            return Err(());
        }
        if core.mode(self.me).load(Ordering::SeqCst) == IN_ORDER {
            core.cursor(self.me).store(seq + 1, Ordering::SeqCst);
            core.freed();
        }
        self.holds.fetch_or(1 << j, Ordering::SeqCst);
        self.last.fetch_max(seq, Ordering::SeqCst);
        Ok(Taken { slot: k, seq, missed, hold: j })
    }

    /// Waits (spinning briefly, then asleep) until sample `want` is
    /// published or the stream ends; `Err(Timeout)` past `deadline`.
    fn wait(&self, want: u64, deadline: Option<Instant>) -> Result<(), Stop> {
        let core = &self.core;
        let ready = || core.newest() >= want || core.ended();
        if spin(WINDOW, || ready().then_some(())).is_some() {
            return Ok(());
        }
        match left(deadline) {
            Some(l) if l.is_zero() => Err(Stop::Timeout),
            l => {
                // Asleep a slice at a time, to look again whether the
                // publisher lives (a dead one never wakes anyone).
                core.wait_published(l.map_or(LOOK, |l| l.min(LOOK)), ready);
                Ok(())
            }
        }
    }

    /// `Err(Ended)` or `Err(PublisherDied)` if no sample numbered `want`
    /// or later will come; `Ok` if one may (or is there).
    fn check_end(&self, want: u64) -> Result<(), Stop> {
        let core = &self.core;
        // The end is set after the last publish: read it first, then newest.
        let ended = core.ended();
        if core.newest() >= want {
            return Ok(());
        }
        if ended {
            return Err(Stop::Ended);
        }
        if self.publisher_alive() {
            return Ok(());
        }
        // Gone: after a last publish, or after ending normally (the end is
        // set before the publisher's place is given back).
        match (core.ended(), core.newest() >= want) {
            (_, true) => Ok(()),
            (true, false) => Err(Stop::Ended),
            (false, false) => Err(Stop::PublisherDied),
        }
    }
}

impl DynSubscriber {
    /// Whether the publisher lives, looked up at most once per [`BELIEVED`].
    fn publisher_alive(&self) -> bool {
        let now = self.born.elapsed().as_nanos() as u64 + 1;
        let at = self.alive_at.load(Ordering::Relaxed);
        if at != 0 && now.saturating_sub(at) < BELIEVED.as_nanos() as u64 {
            return true;
        }
        let alive = self.core.publisher_alive();
        self.alive_at.store(if alive { now } else { 0 }, Ordering::Relaxed);
        alive
    }
}

impl Drop for DynSubscriber {
    /// Gives the subscriber's place back (a forked child's copy gives
    /// nothing: the place is its parent's).
    fn drop(&mut self) {
        if self.core.seg.check_process().is_ok() {
            self.core.mode(self.me).store(LATEST, Ordering::SeqCst);
            self.core.subscribers.give_back(&self.core.seg, self.me);
            self.core.freed();
        }
    }
}
