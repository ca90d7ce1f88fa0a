//! `DynPublisher`: the publisher's engine, its dtype chosen at run time
//! and its slots named by index; [`Publisher`](super::Publisher) is its
//! typed face, and bindings to other languages use it directly.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::control::{Config, Core, Policy, IN_ORDER};
use super::error::{LoanError, LoanTimeoutError, Stop, TryLoanError};
use super::publisher::PublisherBuilder;
use crate::npy::dtype::DType;
use crate::sync::raw::{left, SLICE};
use crate::{Error, Result};

/// A stream's publisher whose dtype is chosen at run time: slots are lent
/// and published by index, their bytes reached through
/// [`slot_ptr`](Self::slot_ptr). Everything [`Publisher`](super::Publisher)
/// promises holds here too. Safe to share between threads: sequence
/// numbers follow publish order.
pub struct DynPublisher {
    pub(super) core: Core,
    state: Mutex<State>,
}

/// What the publisher's threads share in this process.
struct State {
    /// Slots this handle has on loan.
    loaned: Vec<bool>,
    /// Since when in-order subscribers have held every free slot back
    /// (across calls: a publisher that only `try_loan`s drops laggards too).
    blocked: Option<Instant>,
}

impl DynPublisher {
    /// A builder for stream `name` of samples of `shape` (then
    /// [`create_dyn`](PublisherBuilder::create_dyn)).
    pub fn builder(name: &str, shape: &[usize]) -> PublisherBuilder<(), ndarray::IxDyn> {
        PublisherBuilder::new(name, ndarray::IxDyn(shape))
    }

    pub(super) fn create(name: &str, dtype: DType, frame: &[usize], cfg: Config) -> Result<DynPublisher> {
        let core = match Core::create(name, dtype, frame, cfg, 1) {
            Err(Error::AlreadyExists { creator_gone: true, .. }) => take_over(name, dtype, frame, cfg)?,
            other => other?,
        };
        core.seg.check_process()?;
        if core.publisher.take(&core.seg).is_none() {
            return Err(Error::TooManyHandles { name: core.seg.name().to_owned(), what: "publishers", max: 1 });
        }
        core.publisher_joined();
        let state = State { loaned: vec![false; core.cfg.slots], blocked: None };
        Ok(DynPublisher { core, state: Mutex::new(state) })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Changed in single statements: consistent after a panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        self.core.seg.name()
    }

    /// A sample's shape.
    pub fn shape(&self) -> &[usize] {
        &self.core.frame
    }

    /// The samples' dtype.
    pub fn dtype(&self) -> DType {
        self.core.dtype
    }

    /// Bytes of one sample.
    pub fn sample_bytes(&self) -> usize {
        self.core.frame_bytes
    }

    /// The first byte of slot `k` (C order, `sample_bytes` long, aligned
    /// for the dtype). Write only to a slot on loan to this publisher.
    pub fn slot_ptr(&self, k: usize) -> *mut u8 {
        self.core.frame_ptr(k)
    }

    /// `Err(Inherited)` in a child forked from the process that made it:
    /// its slots and loans are its parent's.
    pub fn check_process(&self) -> Result<()> {
        self.core.seg.check_process()
    }

    /// A free slot's index to write the next sample in (see
    /// [`Publisher::loan`](super::Publisher::loan)).
    pub fn loan(&self) -> Result<usize, LoanError> {
        self.loan_until(None, false).map_err(LoanError::from)
    }

    /// A free slot now, if there is one.
    pub fn try_loan(&self) -> Result<usize, TryLoanError> {
        self.loan_until(None, true).map_err(TryLoanError::from)
    }

    /// A free slot within `limit`.
    pub fn loan_timeout(&self, limit: Duration) -> Result<usize, LoanTimeoutError> {
        self.loan_until(Instant::now().checked_add(limit), false).map_err(LoanTimeoutError::from)
    }

    fn loan_until(&self, deadline: Option<Instant>, once: bool) -> Result<usize, Stop> {
        self.core.seg.check_process().map_err(|_| Stop::Inherited)?;
        let spare = self.core.cfg.slots - self.core.cfg.subscribers * self.core.cfg.holds - 1;
        loop {
            let mut state = self.state();
            if state.loaned.iter().filter(|&&l| l).count() >= spare {
                return Err(Stop::TooManyLoans);
            }
            if let Some(k) = self.pick(&state.loaned) {
                if self.core.claim(k) {
                    state.blocked = None;
                    state.loaned[k] = true;
                    return Ok(k);
                }
                continue; // a subscriber took a hold on it meanwhile
            }
            if self.tidy() {
                continue;
            }
            let since = *state.blocked.get_or_insert_with(Instant::now);
            if let Policy::Block { lag } = self.core.cfg.policy {
                if since.elapsed() >= lag {
                    // The furthest behind go; the rest get a lag of their own.
                    self.drop_laggards();
                    state.blocked = Some(Instant::now());
                    continue;
                }
            }
            drop(state);
            if once {
                return Err(Stop::Full);
            }
            if left(deadline).is_some_and(|l| l.is_zero()) {
                return Err(Stop::Timeout);
            }
            let lag = match self.core.cfg.policy {
                Policy::Block { lag } => lag.saturating_sub(since.elapsed()),
                Policy::Overwrite => SLICE,
            };
            let limit = left(deadline).map_or(lag, |l| l.min(lag)).max(Duration::from_micros(50));
            self.core.wait_freed(limit, || self.pick(&self.state().loaned).is_some());
        }
    }

    /// The slot to write next, `None` if there is none now. On an
    /// `Overwrite` stream, the oldest sample that is not the newest nor
    /// held (or an empty slot). On a `Block` stream, of the samples every
    /// in-order subscriber has read (not the newest, not held), the most
    /// recent: it was written and read moments ago, so it is still in the
    /// caches, where the oldest of 8 frames of 4 MiB would not be; an
    /// empty slot only if no sample is free.
    fn pick(&self, loaned: &[bool]) -> Option<usize> {
        let core = &self.core;
        let newest = core.newest();
        let mut floor = u64::MAX;
        let mut held = Vec::new();
        for i in core.members() {
            if matches!(core.cfg.policy, Policy::Block { .. })
                && core.mode(i).load(Ordering::SeqCst) == IN_ORDER
                && core.dropped(i).load(Ordering::SeqCst) == 0
            {
                floor = floor.min(core.cursor(i).load(Ordering::SeqCst));
            }
            held.extend((0..core.cfg.holds).map(|j| core.hold(i, j).load(Ordering::SeqCst)).filter(|&s| s != 0));
        }
        let free = |k: &usize| match core.seq_in(*k) {
            None => !loaned[*k], // empty, or a dead publisher's unfinished slot
            Some(s) => s != newest && s < floor && !held.contains(&s),
        };
        let free = (0..core.cfg.slots).filter(free);
        match core.cfg.policy {
            Policy::Overwrite => free.min_by_key(|&k| core.seq_in(k).unwrap_or(0)),
            Policy::Block { .. } => free.max_by_key(|&k| core.seq_in(k).unwrap_or(0)),
        }
    }

    /// Tidies away subscribers whose process is gone; true if there were any.
    fn tidy(&self) -> bool {
        let members: Vec<usize> = self.core.members().collect();
        members.into_iter().filter(|&i| !self.core.member_alive(i)).count() > 0
    }

    /// Drops the in-order subscribers furthest behind (their cursor is the
    /// lowest): they no longer hold the publisher back.
    fn drop_laggards(&self) {
        let core = &self.core;
        let behind = |i: &usize| {
            core.mode(*i).load(Ordering::SeqCst) == IN_ORDER && core.dropped(*i).load(Ordering::SeqCst) == 0
        };
        let laggards: Vec<usize> = core.members().filter(behind).collect();
        let Some(lowest) = laggards.iter().map(|&i| core.cursor(i).load(Ordering::SeqCst)).min() else { return };
        for i in laggards {
            if core.cursor(i).load(Ordering::SeqCst) == lowest {
                core.dropped(i).store(1, Ordering::SeqCst);
            }
        }
    }

    /// Publishes slot `k`, on loan to this publisher, as the newest sample;
    /// its sequence number.
    pub fn publish(&self, k: usize) -> Result<u64> {
        self.core.seg.check_process()?;
        let mut state = self.state();
        if !state.loaned.get(k).copied().unwrap_or(false) {
            return Err(Error::InvalidArgument(format!(
                "slot {k} of '{}' is not on loan to this publisher",
                self.name()
            )));
        }
        let seq = self.core.newest() + 1;
        self.core.publish(k, seq);
        state.loaned[k] = false;
        Ok(seq)
    }

    /// Gives slot `k`, on loan and not published, back (nothing if it is
    /// not on loan, or in a forked child: the slot is its parent's).
    pub fn give_back(&self, k: usize) {
        if self.core.seg.check_process().is_err() {
            return;
        }
        let mut state = self.state();
        if state.loaned.get(k).copied().unwrap_or(false) {
            self.core.unclaim(k);
            state.loaned[k] = false;
            drop(state);
            self.core.freed(); // another thread may wait for this slot
        }
    }

    /// Ends the stream now, reporting what dropping would ignore.
    pub fn end(self) -> Result<()> {
        self.core.seg.check_process()?;
        drop(self);
        Ok(())
    }
}

impl Drop for DynPublisher {
    /// Ends the stream (in the process that made the publisher: a forked
    /// child's copy ends nothing) and gives the publisher's place back.
    fn drop(&mut self) {
        if self.core.seg.check_process().is_ok() {
            self.core.end();
            self.core.publisher.give_back(&self.core.seg, 0);
        }
    }
}

/// A stream whose publisher died: its name goes to a new stream, whose
/// numbers go on after the dead one's newest (its subscribers drain it,
/// then hear `PublisherDied`). Anything else under the name stays.
fn take_over(name: &str, dtype: DType, frame: &[usize], cfg: Config) -> Result<Core> {
    let taken = || Error::AlreadyExists { name: name.to_owned(), creator_gone: false };
    let old = Core::open(name).map_err(|_| taken())?;
    if old.publisher_alive() {
        return Err(taken());
    }
    let (next, id) = (old.newest() + 1, old.id());
    drop(old);
    // That segment only: another publisher restarting at once may have
    // replaced it already, and its stream is not ours to remove.
    match crate::segment::remove_named(name, id) {
        Ok(()) | Err(Error::NotFound { .. }) => {}
        Err(Error::Replaced { .. }) => return Err(taken()),
        Err(e) => return Err(e),
    }
    Core::create(name, dtype, frame, cfg, next)
}
