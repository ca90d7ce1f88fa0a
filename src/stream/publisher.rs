//! The stream's one writer: [`Publisher`] lends slots ([`Loan`]), written
//! in place, then published as the newest sample.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ndarray::{ArrayRef, ArrayViewMut, Dimension, IntoDimension, IxDyn};

use super::control::{Config, Core, Policy, IN_ORDER};
use super::error::{LoanError, LoanTimeoutError, PublishError, Stop, TryLoanError};
use crate::npy::dtype::Element;
use crate::sync::raw::{left, SLICE};
use crate::{Error, Result};

/// Publishes samples of shape `D` and element `T` into a stream segment.
/// One per stream at a time; dropping it ends the stream (subscribers read
/// what was published, then [`RecvError::Ended`](super::RecvError::Ended)),
/// and the handle that created the segment removes its name.
///
/// It may move between threads but is used from one at a time (`!Sync`):
/// sequence numbers are handed out in publish order.
pub struct Publisher<T: Element, D: Dimension> {
    core: Core,
    /// Slots this handle has on loan.
    loaned: RefCell<Vec<bool>>,
    /// Since when in-order subscribers have held every free slot back
    /// (across calls: a publisher that only `try_loan`s drops laggards too).
    blocked: Cell<Option<Instant>>,
    _t: PhantomData<(T, D)>,
}

/// Sizes and policy of a new stream: [`Publisher::builder`].
#[derive(Clone, Debug)]
pub struct PublisherBuilder<D> {
    name: String,
    shape: D,
    slots: usize,
    policy: Policy,
    subscribers: Option<usize>,
    holds: usize,
}

impl<D: Dimension> PublisherBuilder<D> {
    /// Slots in the stream (default 8): subscribers × holds + 2 at least.
    pub fn slots(mut self, n: usize) -> Self {
        self.slots = n;
        self
    }

    /// What a lagging in-order subscriber does (default
    /// `Block { lag: 1 s }`).
    pub fn policy(mut self, p: Policy) -> Self {
        self.policy = p;
        self
    }

    /// Most subscribers at once (default: as many as the slots allow, at
    /// most 16).
    pub fn subscribers(mut self, n: usize) -> Self {
        self.subscribers = Some(n);
        self
    }

    /// Most samples each subscriber holds at once (default 1).
    pub fn holds(mut self, n: usize) -> Self {
        self.holds = n;
        self
    }

    /// Creates the stream, or takes over the stream of a publisher that
    /// died under that name (a new segment, numbering on from the old).
    pub fn create<T: Element>(self) -> Result<Publisher<T, D>> {
        let subscribers =
            self.subscribers.unwrap_or_else(|| (self.slots.saturating_sub(2) / self.holds.max(1)).clamp(1, 16));
        let cfg = Config { slots: self.slots, subscribers, holds: self.holds, policy: self.policy };
        let frame = self.shape.slice().to_vec();
        let core = match Core::create(&self.name, T::DTYPE, &frame, cfg, 1) {
            Err(Error::AlreadyExists { creator_gone: true, .. }) => take_over(&self.name, T::DTYPE, &frame, cfg)?,
            other => other?,
        };
        Publisher::with(core)
    }
}

/// A stream whose publisher died: its name goes to a new stream, whose
/// numbers go on after the dead one's newest (its subscribers drain it,
/// then hear `PublisherDied`). Anything else under the name stays.
fn take_over(name: &str, dtype: crate::DType, frame: &[usize], cfg: Config) -> Result<Core> {
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

impl<T: Element, D: Dimension> Publisher<T, D> {
    /// Creates stream `name` of `slots` samples of `shape`, with `policy`
    /// (more settings: [`builder`](Self::builder)).
    ///
    /// ```
    /// use shmkit::stream::{Policy, Publisher, Subscriber};
    /// # let name = format!("shmkit-doc-stream-{}", std::process::id());
    /// let publisher = Publisher::<u8, _>::create(&name, (4, 6), 4, Policy::Overwrite)?;
    /// let subscriber = Subscriber::<u8, ndarray::Ix2>::open(&name)?;
    /// let mut loan = publisher.loan()?;
    /// loan.fill(7);
    /// publisher.publish(loan).unwrap();
    /// let sample = subscriber.next()?;
    /// assert_eq!((sample.seq(), sample.sum()), (1, 7 * 24));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create<Sh: IntoDimension<Dim = D>>(name: &str, shape: Sh, slots: usize, policy: Policy) -> Result<Self> {
        Self::builder(name, shape).slots(slots).policy(policy).create()
    }

    /// A builder for stream `name` of samples of `shape`.
    pub fn builder<Sh: IntoDimension<Dim = D>>(name: &str, shape: Sh) -> PublisherBuilder<D> {
        PublisherBuilder {
            name: name.to_owned(),
            shape: shape.into_dimension(),
            slots: 8,
            policy: Policy::Block { lag: Duration::from_secs(1) },
            subscribers: None,
            holds: 1,
        }
    }

    fn with(core: Core) -> Result<Self> {
        core.seg.check_process()?;
        if core.publisher.take(&core.seg).is_none() {
            return Err(Error::TooManyHandles { name: core.seg.name().to_owned(), what: "publishers", max: 1 });
        }
        core.publisher_joined();
        let slots = core.cfg.slots;
        Ok(Publisher { core, loaned: RefCell::new(vec![false; slots]), blocked: Cell::new(None), _t: PhantomData })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        self.core.seg.name()
    }

    /// A sample's shape.
    pub fn shape(&self) -> &[usize] {
        &self.core.frame
    }

    /// A free slot to write the next sample in. On a `Block` stream it
    /// waits while in-order subscribers have not read the slot it would
    /// reuse, and drops one that holds it back past the lag limit, so it
    /// waits at most that long.
    pub fn loan(&self) -> Result<Loan<'_, T, D>, LoanError> {
        self.loan_until(None, false).map_err(LoanError::from)
    }

    /// A free slot now, if there is one.
    pub fn try_loan(&self) -> Result<Loan<'_, T, D>, TryLoanError> {
        self.loan_until(None, true).map_err(TryLoanError::from)
    }

    /// A free slot within `limit`.
    pub fn loan_timeout(&self, limit: Duration) -> Result<Loan<'_, T, D>, LoanTimeoutError> {
        let deadline = Instant::now().checked_add(limit);
        self.loan_until(deadline, false).map_err(LoanTimeoutError::from)
    }

    fn loan_until(&self, deadline: Option<Instant>, once: bool) -> Result<Loan<'_, T, D>, Stop> {
        self.core.seg.check_process().map_err(|_| Stop::Inherited)?;
        let spare = self.core.cfg.slots - self.core.cfg.subscribers * self.core.cfg.holds - 1;
        if self.loaned.borrow().iter().filter(|&&l| l).count() >= spare {
            return Err(Stop::TooManyLoans);
        }
        loop {
            if let Some(k) = self.pick() {
                if self.core.claim(k) {
                    self.blocked.set(None);
                    self.loaned.borrow_mut()[k] = true;
                    return Ok(Loan { publisher: self, slot: k, view: self.view(k) });
                }
                continue; // a subscriber took a hold on it meanwhile
            }
            if self.tidy() {
                continue;
            }
            let since = *self.blocked.get().get_or_insert_with(Instant::now);
            self.blocked.set(Some(since));
            if let Policy::Block { lag } = self.core.cfg.policy {
                if since.elapsed() >= lag {
                    // The furthest behind go; the rest get a lag of their own.
                    self.drop_laggards();
                    self.blocked.set(Some(Instant::now()));
                    continue;
                }
            }
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
            self.core.wait_freed(limit, || self.pick().is_some());
        }
    }

    /// The slot to write next: empty, or the oldest sample that is not the
    /// newest, not held, and (on a `Block` stream) read by every in-order
    /// subscriber; `None` if there is none now.
    fn pick(&self) -> Option<usize> {
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
        let loaned = self.loaned.borrow();
        let free = |k: &usize| match core.seq_in(*k) {
            None => !loaned[*k], // empty, or a dead publisher's unfinished slot
            Some(s) => s != newest && s < floor && !held.contains(&s),
        };
        (0..core.cfg.slots).filter(free).min_by_key(|&k| core.seq_in(k).unwrap_or(0))
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

    fn view(&self, k: usize) -> ArrayViewMut<'_, T, D> {
        let dim = D::from_dimension(&IxDyn(&self.core.frame)).expect("the frame's rank is D's: checked at create");
        // SAFETY: `frame_ptr` bounds-checked slot `k` (frame_bytes bytes, the
        // product of `dim` times T's size) inside the mapping, which lives as
        // long as `self`, whose borrow the view keeps; slots start on
        // 64-aligned data at multiples of the frame's size, a multiple of T's
        // size, so the pointer is aligned for T (a Pod, valid for any bytes);
        // the slot was just claimed: no subscriber holds it and it is no
        // other loan's, so this is its only view in this process.
        unsafe { ArrayViewMut::from_shape_ptr(dim, self.core.frame_ptr(k).cast::<T>()) }
    }

    /// Publishes the loan's slot as the newest sample; its sequence number
    /// (1, 2, ... in publish order). A loan of another publisher is handed
    /// back.
    pub fn publish<'a>(&self, loan: Loan<'a, T, D>) -> Result<u64, PublishError<Loan<'a, T, D>>> {
        if !std::ptr::eq(loan.publisher, self) {
            return Err(PublishError::NotThisPublisher(loan));
        }
        if self.core.seg.check_process().is_err() {
            return Err(PublishError::Inherited(loan));
        }
        let k = loan.slot;
        std::mem::forget(loan); // its slot is published, not given back
        let seq = self.core.newest() + 1;
        self.core.publish(k, seq);
        self.loaned.borrow_mut()[k] = false;
        Ok(seq)
    }

    /// Ends the stream now, reporting what dropping would ignore.
    pub fn end(self) -> Result<()> {
        self.core.seg.check_process()?;
        drop(self);
        Ok(())
    }
}

impl<T: Element, D: Dimension> Drop for Publisher<T, D> {
    /// Ends the stream (in the process that made the publisher: a forked
    /// child's copy ends nothing) and gives the publisher's place back.
    fn drop(&mut self) {
        if self.core.seg.check_process().is_ok() {
            self.core.end();
            self.core.publisher.give_back(&self.core.seg, 0);
        }
    }
}

/// A slot lent by [`Publisher::loan`]: the next sample, written in place
/// (it derefs to ndarray's `ArrayRef`: `loan.fill(0)`, `loan[[i, j]] = x`,
/// `loan.view_mut()`). [`Publisher::publish`] makes it the newest sample;
/// dropping it unpublished gives the slot back. Views made from it borrow
/// it, so none outlives it.
pub struct Loan<'a, T: Element, D: Dimension> {
    publisher: &'a Publisher<T, D>,
    slot: usize,
    view: ArrayViewMut<'a, T, D>,
}

// An `ArrayRef`, unsized, never an `ArrayViewMut<'a>`: that one could be
// moved out (`mem::replace`) and outlive the loan.
impl<T: Element, D: Dimension> Deref for Loan<'_, T, D> {
    type Target = ArrayRef<T, D>;

    fn deref(&self) -> &Self::Target {
        &self.view
    }
}

impl<T: Element, D: Dimension> DerefMut for Loan<'_, T, D> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.view
    }
}

impl<T: Element, D: Dimension> Drop for Loan<'_, T, D> {
    /// Gives the slot back (a forked child's copy gives nothing back: the
    /// slot is its parent's).
    fn drop(&mut self) {
        if self.publisher.core.seg.check_process().is_ok() {
            self.publisher.core.unclaim(self.slot);
            self.publisher.loaned.borrow_mut()[self.slot] = false;
        }
    }
}
