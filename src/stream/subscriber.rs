//! A stream's readers: [`Subscriber`] takes samples in order or the newest
//! one; each [`Sample`] holds its slot until dropped.

use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use ndarray::{ArrayRef, ArrayView, Dimension, IxDyn};

use super::dyn_subscriber::{DynSubscriber, Taken};
use super::error::{RecvError, RecvTimeoutError, TryRecvError};
use crate::npy::dtype::Element;
use crate::{Error, Result};

/// Reads a stream's samples: every one in order ([`next`](Self::next)) or
/// the newest ([`latest`](Self::latest)). Opening takes one of the
/// stream's subscriber places, given back when dropped or when the process
/// dies, however it dies; so do the samples it holds.
pub struct Subscriber<T: Element, D: Dimension> {
    inner: DynSubscriber,
    _t: PhantomData<(T, D)>,
}

impl<T: Element, D: Dimension> Subscriber<T, D> {
    /// Subscribes to stream `name`: [`next`](Self::next) gives the samples
    /// published from now on, in order. Dtype and rank must match.
    pub fn open(name: &str) -> Result<Self> {
        Self::typed(DynSubscriber::open(name)?)
    }

    /// Like [`open`](Self::open), waiting up to `limit` for the stream to
    /// be created, so that programs may start in any order.
    pub fn open_timeout(name: &str, limit: Duration) -> Result<Self> {
        Self::typed(DynSubscriber::open_timeout(name, limit)?)
    }

    fn typed(inner: DynSubscriber) -> Result<Self> {
        let (name, core) = (inner.name().to_owned(), &inner.core);
        if core.dtype != T::DTYPE {
            let found = core.dtype.descr().to_owned();
            return Err(Error::WrongDtype { name, expected: T::DTYPE.descr(), found });
        }
        if D::from_dimension(&IxDyn(&core.frame)).is_none() {
            return Err(Error::WrongNdim { name, expected: D::NDIM.unwrap_or(0), found: core.frame.len() });
        }
        Ok(Subscriber { inner, _t: PhantomData })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// A sample's shape.
    pub fn shape(&self) -> &[usize] {
        self.inner.shape()
    }

    /// The next sample in order (the one after the last this handle got),
    /// waiting for it. On an `Overwrite` stream it may have been replaced:
    /// then the oldest one after it, and [`Sample::missed`] says how many
    /// were skipped. After the stream's end, every sample published before
    /// it, then [`RecvError::Ended`] (or `PublisherDied`).
    pub fn next(&self) -> Result<Sample<'_, T, D>, RecvError> {
        self.inner.next().map(|t| self.sample(t))
    }

    /// The next sample in order if it is there now.
    pub fn try_next(&self) -> Result<Sample<'_, T, D>, TryRecvError> {
        self.inner.try_next().map(|t| self.sample(t))
    }

    /// The next sample in order, waiting at most `limit`.
    pub fn next_timeout(&self, limit: Duration) -> Result<Sample<'_, T, D>, RecvTimeoutError> {
        self.inner.next_timeout(limit).map(|t| self.sample(t))
    }

    /// The newest sample (waiting for a first one), perhaps one this handle
    /// got before ([`Sample::seq`] tells). From then on this handle holds
    /// no `Block` publisher back, until `next` is called again, which goes
    /// on after this sample.
    pub fn latest(&self) -> Result<Sample<'_, T, D>, RecvError> {
        self.inner.latest().map(|t| self.sample(t))
    }

    fn sample(&self, taken: Taken) -> Sample<'_, T, D> {
        let dim = D::from_dimension(&IxDyn(self.shape())).expect("the frame's rank is D's: checked at open");
        // SAFETY: `slot_ptr` bounds-checked the slot (sample_bytes bytes, the
        // product of `dim` times T's size: the dtype was checked at open)
        // inside the mapping, which lives as long as `self`, whose borrow the
        // view keeps; slots start on 64-aligned data at multiples of the
        // sample's size, a multiple of T's size, so the pointer is aligned for
        // T (a Pod, valid for any bytes); the hold in `taken` keeps the
        // publisher from writing the slot until the sample, and this view
        // with it, is dropped.
        let view = unsafe { ArrayView::from_shape_ptr(dim, self.inner.slot_ptr(taken.slot).cast::<T>()) };
        Sample { sub: self, taken, view }
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
    taken: Taken,
    view: ArrayView<'a, T, D>,
}

impl<T: Element, D: Dimension> Sample<'_, T, D> {
    /// The sample's sequence number: 1 for the stream's first, then one
    /// more per publish.
    pub fn seq(&self) -> u64 {
        self.taken.seq
    }

    /// Samples skipped before this one by `next` (overwritten before they
    /// were read, on an `Overwrite` stream; or after `latest`); 0 for
    /// `latest`.
    pub fn missed(&self) -> u64 {
        self.taken.missed
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
        self.sub.inner.release(self.taken.hold);
    }
}
