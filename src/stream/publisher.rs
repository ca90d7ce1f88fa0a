//! The stream's one writer: [`Publisher`] lends slots ([`Loan`]), written
//! in place, then published as the newest sample.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use ndarray::{ArrayRef, ArrayViewMut, Dimension, IntoDimension, IxDyn};

use super::control::{Config, Policy};
use super::dyn_publisher::DynPublisher;
use super::error::{LoanError, LoanTimeoutError, PublishError, TryLoanError};
use crate::npy::dtype::{DType, Element};
use crate::Result;

/// Publishes samples of shape `D` and element `T` into a stream segment.
/// One per stream at a time; dropping it ends the stream (subscribers read
/// what was published, then [`RecvError::Ended`](super::RecvError::Ended)),
/// and the handle that created the segment removes its name. Safe to share
/// between threads: sequence numbers follow publish order.
pub struct Publisher<T: Element, D: Dimension> {
    inner: DynPublisher,
    _t: PhantomData<(T, D)>,
}

/// Sizes and policy of a new stream of `T` samples of shape `D`:
/// [`Publisher::builder`]; `T` is `()` in
/// [`DynPublisher::builder`], whose dtype is chosen at
/// [`create_dyn`](Self::create_dyn).
pub struct PublisherBuilder<T, D> {
    name: String,
    shape: D,
    slots: usize,
    policy: Policy,
    subscribers: Option<usize>,
    holds: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T, D: Dimension> Clone for PublisherBuilder<T, D> {
    fn clone(&self) -> Self {
        let (name, shape, _t) = (self.name.clone(), self.shape.clone(), PhantomData);
        PublisherBuilder { name, shape, _t, ..*self }
    }
}

impl<T, D: Dimension> std::fmt::Debug for PublisherBuilder<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherBuilder")
            .field("name", &self.name)
            .field("shape", &self.shape.slice())
            .field("slots", &self.slots)
            .field("policy", &self.policy)
            .field("subscribers", &self.subscribers)
            .field("holds", &self.holds)
            .finish()
    }
}

impl<T: Element, D: Dimension> PublisherBuilder<T, D> {
    /// Creates the stream, or takes over the stream of a publisher that
    /// died under that name (a new segment, numbering on from the old).
    pub fn create(self) -> Result<Publisher<T, D>> {
        Ok(Publisher { inner: self.create_dyn(T::DTYPE)?, _t: PhantomData })
    }
}

impl<T, D: Dimension> PublisherBuilder<T, D> {
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

    /// As [`create`](Self::create), with the dtype chosen at run time.
    pub fn create_dyn(self, dtype: DType) -> Result<DynPublisher> {
        let most = (self.slots.saturating_sub(2) / self.holds.max(1)).clamp(1, 16);
        let subscribers = self.subscribers.unwrap_or(most);
        let cfg = Config { slots: self.slots, subscribers, holds: self.holds, policy: self.policy };
        DynPublisher::create(&self.name, dtype, self.shape.slice(), cfg)
    }

    pub(super) fn new(name: &str, shape: D) -> Self {
        PublisherBuilder {
            name: name.to_owned(),
            shape,
            slots: 8,
            policy: Policy::Block { lag: Duration::from_secs(1) },
            subscribers: None,
            holds: 1,
            _t: PhantomData,
        }
    }
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
    pub fn builder<Sh: IntoDimension<Dim = D>>(name: &str, shape: Sh) -> PublisherBuilder<T, D> {
        PublisherBuilder::new(name, shape.into_dimension())
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// A sample's shape.
    pub fn shape(&self) -> &[usize] {
        self.inner.shape()
    }

    /// A free slot to write the next sample in. On a `Block` stream it
    /// waits while in-order subscribers have not read the slot it would
    /// reuse, and drops one that holds it back past the lag limit, so it
    /// waits at most that long.
    pub fn loan(&self) -> Result<Loan<'_, T, D>, LoanError> {
        self.inner.loan().map(|k| self.lend(k))
    }

    /// A free slot now, if there is one.
    pub fn try_loan(&self) -> Result<Loan<'_, T, D>, TryLoanError> {
        self.inner.try_loan().map(|k| self.lend(k))
    }

    /// A free slot within `limit`.
    pub fn loan_timeout(&self, limit: Duration) -> Result<Loan<'_, T, D>, LoanTimeoutError> {
        self.inner.loan_timeout(limit).map(|k| self.lend(k))
    }

    fn lend(&self, k: usize) -> Loan<'_, T, D> {
        let dim = D::from_dimension(&IxDyn(self.shape())).expect("the frame's rank is D's: checked at create");
        // SAFETY: `slot_ptr` bounds-checked slot `k` (sample_bytes bytes, the
        // product of `dim` times T's size, as T::DTYPE made the stream) inside
        // the mapping, which lives as long as `self`, whose borrow the view
        // keeps; slots start on 64-aligned data at multiples of the sample's
        // size, a multiple of T's size, so the pointer is aligned for T (a
        // Pod, valid for any bytes); the slot was just claimed: no subscriber
        // holds it and it is no other loan's, so this is its only view.
        let view = unsafe { ArrayViewMut::from_shape_ptr(dim, self.inner.slot_ptr(k).cast::<T>()) };
        Loan { publisher: self, slot: k, view }
    }

    /// Publishes the loan's slot as the newest sample; its sequence number
    /// (1, 2, ... in publish order). A loan of another publisher is handed
    /// back.
    pub fn publish<'a>(&self, loan: Loan<'a, T, D>) -> Result<u64, PublishError<Loan<'a, T, D>>> {
        if !std::ptr::eq(loan.publisher, self) {
            return Err(PublishError::NotThisPublisher(loan));
        }
        match self.inner.publish(loan.slot) {
            Ok(seq) => {
                std::mem::forget(loan); // its slot is published, not given back
                Ok(seq)
            }
            Err(_) => Err(PublishError::Inherited(loan)),
        }
    }

    /// Ends the stream now, reporting what dropping would ignore.
    pub fn end(self) -> Result<()> {
        self.inner.end()
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
        self.publisher.inner.give_back(self.slot);
    }
}
