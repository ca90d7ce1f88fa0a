//! A stream's readers: [`Subscriber`] takes samples in order or the newest
//! one; each [`Sample`] holds its slot until dropped.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ndarray::{ArrayRef, ArrayView, Dimension, IxDyn};

use super::control::{Core, Look, IN_ORDER, LATEST};
use super::error::{RecvError, RecvTimeoutError, Stop, TryRecvError};
use crate::npy::dtype::Element;
use crate::sync::raw::left;
use crate::sync::spin::{spin, WINDOW};
use crate::{Error, Result};

/// How long a waiting subscriber sleeps before it looks whether the
/// publisher is still alive.
const LOOK: Duration = Duration::from_millis(50);

/// Reads a stream's samples: every one in order ([`next`](Self::next)) or
/// the newest ([`latest`](Self::latest)). Opening takes one of the
/// stream's subscriber places, given back when dropped or when the process
/// dies, however it dies; so do the samples it holds.
///
/// It may move between threads but is used from one at a time (`!Sync`).
pub struct Subscriber<T: Element, D: Dimension> {
    core: Core,
    me: usize,
    /// Which of this subscriber's holds are in use.
    holds: RefCell<Vec<bool>>,
    /// The sequence number of the last sample this handle got.
    last: Cell<u64>,
    _t: PhantomData<(T, D)>,
}

impl<T: Element, D: Dimension> Subscriber<T, D> {
    /// Subscribes to stream `name`: [`next`](Self::next) gives the samples
    /// published from now on, in order. Dtype and rank must match.
    pub fn open(name: &str) -> Result<Self> {
        let core = Core::open(name)?;
        if core.dtype != T::DTYPE {
            let found = core.dtype.descr().to_owned();
            return Err(Error::WrongDtype { name: name.to_owned(), expected: T::DTYPE.descr(), found });
        }
        if D::from_dimension(&IxDyn(&core.frame)).is_none() {
            let expected = D::NDIM.unwrap_or(0);
            return Err(Error::WrongNdim { name: name.to_owned(), expected, found: core.frame.len() });
        }
        core.seg.check_process()?;
        let max = core.cfg.subscribers;
        let me = core.subscribers.take(&core.seg).ok_or_else(|| Error::TooManyHandles {
            name: name.to_owned(),
            what: "subscribers",
            max,
        })?;
        // The record may be a departed subscriber's: start it afresh.
        for j in 0..core.cfg.holds {
            core.hold(me, j).store(0, Ordering::SeqCst);
        }
        let last = core.newest();
        core.cursor(me).store(last + 1, Ordering::SeqCst);
        core.mode(me).store(IN_ORDER, Ordering::SeqCst);
        core.dropped(me).store(0, Ordering::SeqCst);
        core.freed();
        let holds = RefCell::new(vec![false; core.cfg.holds]);
        Ok(Subscriber { core, me, holds, last: Cell::new(last), _t: PhantomData })
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
    /// then the oldest one after it, and [`Sample::missed`] says how many
    /// were skipped. After the stream's end, every sample published before
    /// it, then [`RecvError::Ended`] (or `PublisherDied`).
    pub fn next(&self) -> Result<Sample<'_, T, D>, RecvError> {
        self.next_until(None, false).map_err(RecvError::from)
    }

    /// The next sample in order if it is there now.
    pub fn try_next(&self) -> Result<Sample<'_, T, D>, TryRecvError> {
        self.next_until(None, true).map_err(TryRecvError::from)
    }

    /// The next sample in order, waiting at most `limit`.
    pub fn next_timeout(&self, limit: Duration) -> Result<Sample<'_, T, D>, RecvTimeoutError> {
        self.next_until(Instant::now().checked_add(limit), false).map_err(RecvTimeoutError::from)
    }

    /// The newest sample (waiting for a first one), perhaps one this handle
    /// got before ([`Sample::seq`] tells). From then on this handle holds
    /// no `Block` publisher back, until `next` is called again, which goes
    /// on after this sample.
    pub fn latest(&self) -> Result<Sample<'_, T, D>, RecvError> {
        let j = self.prepare().map_err(RecvError::from)?;
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
            if let Some(k) = here.filter(|_| n > self.last.get() || self.check_end(n + 1).is_ok()) {
                match self.take_at(j, k, n, 0, &mut tries) {
                    Ok(sample) => return Ok(sample),
                    Err(()) => continue, // replaced meanwhile: the newest is newer
                }
            }
            self.check_end(n + 1).map_err(RecvError::from)?;
            self.wait(n + 1, None).map_err(RecvError::from)?;
        }
    }

    fn next_until(&self, deadline: Option<Instant>, once: bool) -> Result<Sample<'_, T, D>, Stop> {
        let j = self.prepare()?;
        let core = &self.core;
        if core.mode(self.me).load(Ordering::SeqCst) == LATEST {
            core.cursor(self.me).store(self.last.get() + 1, Ordering::SeqCst);
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
            core.cursor(self.me).store(core.newest() + 1, Ordering::SeqCst);
            core.dropped(self.me).store(0, Ordering::SeqCst);
            return Err(Stop::Dropped);
        }
        self.holds.borrow().iter().position(|used| !used).ok_or(Stop::TooManySamples)
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
    fn take_at(&self, j: usize, k: usize, seq: u64, missed: u64, tries: &mut u32) -> Result<Sample<'_, T, D>, ()> {
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
        self.holds.borrow_mut()[j] = true;
        self.last.set(self.last.get().max(seq));
        Ok(Sample { sub: self, hold: j, seq, missed, view: self.view(k) })
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
        if core.publisher_alive() {
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

    fn view(&self, k: usize) -> ArrayView<'_, T, D> {
        let dim = D::from_dimension(&IxDyn(&self.core.frame)).expect("the frame's rank is D's: checked at open");
        // SAFETY: `frame_ptr` bounds-checked slot `k` (frame_bytes bytes, the
        // product of `dim` times T's size) inside the mapping, which lives as
        // long as `self`, whose borrow the view keeps; slots start on
        // 64-aligned data at multiples of the frame's size, a multiple of T's
        // size, so the pointer is aligned for T (a Pod, valid for any bytes);
        // this subscriber's hold keeps the publisher from writing the slot
        // until the sample (and this view with it) is dropped.
        unsafe { ArrayView::from_shape_ptr(dim, self.core.frame_ptr(k).cast_const().cast::<T>()) }
    }
}

impl<T: Element, D: Dimension> Drop for Subscriber<T, D> {
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

/// A sample taken by a [`Subscriber`]: its slot, read in place (it derefs
/// to ndarray's `ArrayRef`: `sample.sum()`, `sample[[i, j]]`,
/// `sample.view()`), which the publisher does not reuse until the sample
/// is dropped. Views made from it borrow it, so none outlives it:
///
/// ```compile_fail
/// # use shmkit::stream::{Policy, Publisher, Subscriber};
/// # let p = Publisher::<u8, ndarray::Ix1>::create("shmkit-doc-cf", 4, 4, Policy::Overwrite).unwrap();
/// # let s = Subscriber::<u8, ndarray::Ix1>::open("shmkit-doc-cf").unwrap();
/// let view = {
///     let sample = s.next().unwrap();
///     sample.view() // borrows the sample, which ends here
/// };
/// ```
pub struct Sample<'a, T: Element, D: Dimension> {
    sub: &'a Subscriber<T, D>,
    hold: usize,
    seq: u64,
    missed: u64,
    view: ArrayView<'a, T, D>,
}

impl<T: Element, D: Dimension> Sample<'_, T, D> {
    /// The sample's sequence number: 1 for the stream's first, then one
    /// more per publish.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Samples skipped before this one by `next` (overwritten before they
    /// were read, on an `Overwrite` stream; or after `latest`); 0 for
    /// `latest`.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

// An `ArrayRef`, unsized, never an `ArrayView<'a>`: that one is `Copy`
// and would outlive the sample (and its hold on the slot).
impl<T: Element, D: Dimension> Deref for Sample<'_, T, D> {
    type Target = ArrayRef<T, D>;

    fn deref(&self) -> &Self::Target {
        &self.view
    }
}

impl<T: Element, D: Dimension> Drop for Sample<'_, T, D> {
    /// Lets the slot go (a forked child's copy lets nothing go: the hold
    /// is its parent's, which may still read the sample).
    fn drop(&mut self) {
        let core = &self.sub.core;
        if core.seg.check_process().is_err() {
            return;
        }
        core.hold(self.sub.me, self.hold).store(0, Ordering::SeqCst);
        self.sub.holds.borrow_mut()[self.hold] = false;
        core.freed();
    }
}
