//! Ready-made reductions every registry has: sum, min and max over rows
//! of any shared array, whatever its element type and rank (the element
//! work is `array::reduce`'s).

use ndarray::{ArrayView, IxDyn};

use crate::array::reduce;
use crate::Element;

/// Partial sum of a chunk (exact for integers).
pub(crate) fn sum<T: Element>(v: ArrayView<'_, T, IxDyn>) -> T::Partial {
    reduce::sum(&v)
}

/// Smallest element of a chunk, skipping NaN; `None` if empty.
pub(crate) fn min<T: Element>(v: ArrayView<'_, T, IxDyn>) -> Option<T> {
    reduce::min(&v)
}

/// Largest element of a chunk, skipping NaN; `None` if empty.
pub(crate) fn max<T: Element>(v: ArrayView<'_, T, IxDyn>) -> Option<T> {
    reduce::max(&v)
}
