//! Views of a `SharedArray` that hold a claim on the bytes they cover.
//!
//! Each guard derefs to ndarray's `ArrayRef` (or to a slice), so every
//! ndarray method works on it (`v.sum()`, `v.fill(1.0)`, `v[[i, j]]`,
//! `v.view()`), and nothing borrowed from it can outlive it: `ArrayRef`
//! is unsized, so it cannot be moved out, and the views it makes borrow
//! the guard. The claim is released when the guard is dropped.

use std::fmt;
use std::ops::{Deref, DerefMut};

use ndarray::{ArrayRef, ArrayView, ArrayViewMut, Dimension};

use super::claim::Claim;

/// A read-only view of a shared array's elements (or rows of them);
/// other shmkit views of these bytes, in any process, may only read.
pub struct View<'a, T, D: Dimension> {
    pub(super) view: ArrayView<'a, T, D>,
    pub(super) _claim: Claim<'a>,
}

/// A mutable view of a shared array's elements (or rows of them); no
/// other shmkit view of these bytes exists, in any process, while it lives.
pub struct ViewMut<'a, T, D: Dimension> {
    pub(super) view: ArrayViewMut<'a, T, D>,
    pub(super) _claim: Claim<'a>,
}

/// All of a shared array's elements in memory order, read-only.
pub struct SliceRef<'a, T> {
    pub(super) slice: &'a [T],
    pub(super) _claim: Claim<'a>,
}

/// All of a shared array's elements in memory order, mutable.
pub struct SliceMut<'a, T> {
    pub(super) slice: &'a mut [T],
    pub(super) _claim: Claim<'a>,
}

impl<T, D: Dimension> Deref for View<'_, T, D> {
    type Target = ArrayRef<T, D>;
    fn deref(&self) -> &ArrayRef<T, D> {
        &self.view
    }
}

impl<T, D: Dimension> Deref for ViewMut<'_, T, D> {
    type Target = ArrayRef<T, D>;
    fn deref(&self) -> &ArrayRef<T, D> {
        &self.view
    }
}

impl<T, D: Dimension> DerefMut for ViewMut<'_, T, D> {
    fn deref_mut(&mut self) -> &mut ArrayRef<T, D> {
        &mut self.view
    }
}

impl<T> Deref for SliceRef<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.slice
    }
}

impl<T> Deref for SliceMut<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.slice
    }
}

impl<T> DerefMut for SliceMut<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.slice
    }
}

impl<T: fmt::Debug, D: Dimension> fmt::Debug for View<'_, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view.fmt(f)
    }
}

impl<T: fmt::Debug, D: Dimension> fmt::Debug for ViewMut<'_, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view.fmt(f)
    }
}

impl<T: fmt::Debug> fmt::Debug for SliceRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.slice.fmt(f)
    }
}

impl<T: fmt::Debug> fmt::Debug for SliceMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.slice.fmt(f)
    }
}
