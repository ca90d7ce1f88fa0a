//! Reductions over elements, as numpy does them: sums exact for integers
//! (carried in 128 bits), min and max that skip NaN. Used by the pool's
//! built-in tasks and by MPI arrays, so that `sum` means one thing.

use ndarray::{ArrayRef, Dimension};

use crate::Element;

/// Partial sum of `values` (exact for integers), with eight independent
/// accumulators so the loop vectorises (a single running sum is one long
/// dependency chain).
pub(crate) fn sum_slice<T: Element>(values: &[T]) -> T::Partial {
    let mut lanes = [T::Partial::default(); 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(T::Partial::default(), |a, &x| T::add_to(a, x));
    for c in chunks {
        for (lane, &x) in lanes.iter_mut().zip(c) {
            *lane = T::add_to(*lane, x);
        }
    }
    lanes.into_iter().fold(tail, T::merge)
}

/// Partial sum of a view.
pub(crate) fn sum<T: Element, D: Dimension>(v: &ArrayRef<T, D>) -> T::Partial {
    match v.as_slice_memory_order() {
        Some(s) => sum_slice(s),
        None => v.iter().fold(T::Partial::default(), |a, &x| T::add_to(a, x)),
    }
}

/// Smallest element (NaN is never chosen over a number), `None` if empty.
pub(crate) fn min<T: Element, D: Dimension>(v: &ArrayRef<T, D>) -> Option<T> {
    v.iter().copied().reduce(|a, b| if b < a || is_nan(a) { b } else { a })
}

/// Largest element (NaN is never chosen over a number), `None` if empty.
pub(crate) fn max<T: Element, D: Dimension>(v: &ArrayRef<T, D>) -> Option<T> {
    v.iter().copied().reduce(|a, b| if b > a || is_nan(a) { b } else { a })
}

/// True only for a float NaN: the one value not ordered against itself.
pub(crate) fn is_nan<T: PartialOrd>(x: T) -> bool {
    x.partial_cmp(&x).is_none()
}

/// Combines two partial results of [`min`] (`keep_b` = "b is smaller") or
/// [`max`].
pub(crate) fn pick<T: Element>(a: Option<T>, b: Option<T>, keep_b: impl Fn(T, T) -> bool) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if keep_b(a, b) || is_nan(a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array1;

    #[test]
    fn sum_matches_naive_for_odd_lengths() {
        let v: Vec<f64> = (0..1003).map(|i| i as f64 * 0.5).collect();
        assert_eq!(sum_slice(&v), v.iter().sum::<f64>());
        assert_eq!(sum_slice::<u8>(&[]), 0);
        let big = vec![i64::MAX; 9];
        assert_eq!(sum_slice(&big), 9 * i64::MAX as i128, "exact past i64");
    }

    #[test]
    fn min_and_max_skip_nan() {
        let a = Array1::from(vec![f64::NAN, 3.0, -1.0, f64::NAN, 7.0]);
        assert_eq!(min(&a.view()), Some(-1.0));
        assert_eq!(max(&a.view()), Some(7.0));
        assert_eq!(pick(Some(f64::NAN), Some(2.0), |a, b| b < a), Some(2.0));
        assert_eq!(pick(None, Some(2), |a, b| b < a), Some(2));
        assert_eq!(min(&Array1::from(vec![f64::NAN]).view()).map(is_nan), Some(true), "all NaN: NaN");
    }
}
