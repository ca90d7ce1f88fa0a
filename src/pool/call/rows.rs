//! Operations over an array's rows: how it is cut into chunks, the claim
//! a pass holds, and what a pass that did not complete reports.
//!
//! A pass claims every row of the array through the caller's handle before
//! any chunk runs (exclusively to write, shared to read) and holds the
//! claim until every chunk has answered. So a pass meets a conflicting
//! view before it touches anything ([`InPlaceError::Busy`]), never half-way,
//! and the helpers, which work under that claim, take none of their own.

use std::ops::Range;

use ndarray::Dimension;

use crate::array::reduce;
use crate::pool::call::batch::{collect, Batch, Chunking};
use crate::pool::call::claimed::Round;
use crate::pool::error::Failed;
use crate::pool::error::{InPlaceError, ReduceError, RowReport, TaskError};
use crate::pool::helper::builtin;
use crate::pool::helper::registry::{ReadsRows, Task, WritesRows};
use crate::pool::transport::wire::ChunkArgs;
use crate::pool::Pool;
use crate::{Element, SharedArray};

/// Smallest chunk of an array operation's rows, in bytes, unless a chunk
/// size is set: below it, a chunk's fixed cost outweighs spreading.
const MIN_CHUNK_BYTES: usize = 2 << 20;
/// Nor larger than this, so that a helper delayed by another process
/// holds little of the pass when the others run out of chunks.
const MAX_CHUNK_BYTES: usize = 16 << 20;

/// One chunk's rows and what came of them: `Ok(None)` if it ran but its
/// result was lost with its helper (only in a pass that writes: a pass
/// that reads runs such a chunk again).
type Chunk<R> = (Range<usize>, Result<Option<R>, Failed>);

impl<'p> Batch<'p> {
    /// Runs `f` on every chunk of rows of `array`, in place, in the helpers.
    ///
    /// All or nothing with respect to other views: every row is claimed
    /// before any chunk runs, so a live view of the array anywhere fails
    /// the pass with [`InPlaceError::Busy`] and nothing changes. If a chunk
    /// fails, the other chunks still run, and [`InPlaceError::Incomplete`]
    /// says exactly which rows were applied, which were not, and which
    /// may be half-applied.
    pub fn for_each_chunk_mut<T, D, M, F>(self, array: &mut SharedArray<T, D>, f: F) -> Result<(), InPlaceError>
    where
        T: Element,
        D: Dimension,
        M: WritesRows<T, D>,
        F: Task<M, Args = ChunkArgs>,
    {
        finish_pass(self.run_rows::<T, D, M, F>(array, true, f, |c| c))
    }

    /// [`for_each_chunk_mut`](Self::for_each_chunk_mut) with a parameter
    /// for the task, `fn(&P, ArrayViewMut<T, D>)`: sent with every chunk
    /// (a capturing closure cannot be a task: helpers cannot see what it
    /// captured).
    ///
    /// ```no_run
    /// fn scale(by: &f64, mut rows: ndarray::ArrayViewMut1<f64>) { rows *= *by; }
    /// # fn tasks(r: &mut shmkit::Registry) { r.add(scale); }
    /// # let pool: shmkit::Pool = todo!();
    /// # let mut data: shmkit::SharedArray<f64, ndarray::Ix1> = todo!();
    /// pool.for_each_chunk_mut_with(&mut data, scale, 2.5)?;
    /// # Ok::<(), shmkit::pool::InPlaceError>(())
    /// ```
    pub fn for_each_chunk_mut_with<T, D, P, M, F>(
        self,
        array: &mut SharedArray<T, D>,
        f: F,
        param: P,
    ) -> Result<(), InPlaceError>
    where
        T: Element,
        D: Dimension,
        P: Clone,
        M: WritesRows<T, D>,
        F: Task<M, Args = (ChunkArgs, P)>,
    {
        finish_pass(self.run_rows::<T, D, M, F>(array, true, f, |c| (c, param.clone())))
    }

    /// Maps every chunk of rows of `array` to a value in the helpers, then
    /// folds the values with `combine` here, in row order.
    pub fn reduce<T, D, R, M, F>(
        self,
        array: &SharedArray<T, D>,
        f: F,
        combine: impl FnMut(R, R) -> R,
    ) -> Result<R, ReduceError>
    where
        T: Element,
        D: Dimension,
        M: ReadsRows<T, D>,
        F: Task<M, Args = ChunkArgs, Output = R>,
    {
        fold(self.run_rows::<T, D, M, F>(array, false, f, |c| c).map_err(ReduceError::Busy)?, combine)
    }

    /// [`reduce`](Self::reduce) with a parameter for the task,
    /// `fn(&P, ArrayView<T, D>) -> R`, sent with every chunk.
    pub fn reduce_with<T, D, P, R, M, F>(
        self,
        array: &SharedArray<T, D>,
        f: F,
        param: P,
        combine: impl FnMut(R, R) -> R,
    ) -> Result<R, ReduceError>
    where
        T: Element,
        D: Dimension,
        P: Clone,
        M: ReadsRows<T, D>,
        F: Task<M, Args = (ChunkArgs, P), Output = R>,
    {
        let chunks = self.run_rows::<T, D, M, F>(array, false, f, |c| (c, param.clone()));
        fold(chunks.map_err(ReduceError::Busy)?, combine)
    }

    /// Sum of all elements, as numpy sums them: exact for integers (as
    /// `i64` or `u64`; [`ReduceError::Overflow`] past those, where numpy
    /// wraps), in `f64` for floats (NaN if any element is NaN).
    pub fn sum<T: Element, D: Dimension>(self, array: &SharedArray<T, D>) -> Result<T::Sum, ReduceError> {
        let chunks = self.run_rows::<T, D, _, _>(array, false, builtin::sum::<T>, |c| c);
        let partial = fold(chunks.map_err(ReduceError::Busy)?, T::merge)?;
        T::total(partial).ok_or(ReduceError::Overflow { dtype: T::DTYPE.descr() })
    }

    /// Mean of all elements, in f64 (NaN for an empty array).
    pub fn mean<T: Element, D: Dimension>(self, array: &SharedArray<T, D>) -> Result<f64, ReduceError> {
        Ok(T::sum_to_f64(self.sum(array)?) / array.len() as f64)
    }

    /// Smallest element, `None` for an empty array; NaNs are skipped.
    pub fn min<T: Element, D: Dimension>(self, array: &SharedArray<T, D>) -> Result<Option<T>, ReduceError> {
        let chunks = self.run_rows::<T, D, _, _>(array, false, builtin::min::<T>, |c| c).map_err(ReduceError::Busy)?;
        fold(chunks, |a, b| reduce::pick(a, b, |a, b| b < a))
    }

    /// Largest element, `None` for an empty array; NaNs are skipped.
    pub fn max<T: Element, D: Dimension>(self, array: &SharedArray<T, D>) -> Result<Option<T>, ReduceError> {
        let chunks = self.run_rows::<T, D, _, _>(array, false, builtin::max::<T>, |c| c).map_err(ReduceError::Busy)?;
        fold(chunks, |a, b| reduce::pick(a, b, |a, b| b > a))
    }

    /// Runs row task `F` once per chunk of `array` under a claim of every
    /// row (exclusive if `write`), held until every chunk has answered;
    /// results in row order. `Err` (nothing ran) if the claim conflicts.
    fn run_rows<T, D, M, F>(
        mut self,
        array: &SharedArray<T, D>,
        write: bool,
        _f: F,
        args: impl Fn(ChunkArgs) -> F::Args,
    ) -> crate::Result<Vec<Chunk<F::Output>>>
    where
        T: Element,
        D: Dimension,
        F: Task<M>,
    {
        if array.is_unlinked() {
            // Helpers find arrays by name: one whose name is gone is not
            // theirs to find (a helper that mapped it before lets it go).
            return Err(crate::Error::NotFound { name: array.name().to_owned() });
        }
        let rows = array.shape().first().copied().unwrap_or(0);
        let ranges = self.cut(rows, array.len(), size_of::<T>());
        let chunk = |r: &Range<usize>| ChunkArgs {
            location: array.name().to_owned(),
            file: array.is_file(),
            dev: array.id().dev,
            ino: array.id().ino,
            start: r.start,
            end: r.end,
        };
        // The caller's code (a parameter's `Clone`) runs before the claim,
        // and `Serialize` before any chunk is queued (`send_all`): a panic
        // in either leaves nothing running under a claim that unwinds.
        let mut args: Vec<Option<F::Args>> = ranges.iter().map(chunk).map(args).map(Some).collect();
        let claim = array.claim_all(write)?;
        let mut progress = self.progress_hook().map(monotonic);
        self.chunking = Chunking::Default; // one chunk per job: each answers, and fails, alone
        self.shallow = true; // helpers take chunks as they come free, not 32 at a time
        if write {
            // A chunk rerun after its helper died mid-chunk would apply
            // the half it had done twice: in-place passes never rerun.
            self.retries = Some(0);
        }
        let template = args[0].as_ref().expect("made above");
        let first = self.claim_round::<M, F>(&ranges, template, &mut progress);
        let claimed = first.is_some();
        let mut rounds = first.unwrap_or_else(|| ranges.iter().map(|_| Round::Left).collect());
        let retries = self.retries.unwrap_or(self.pool.inner.config.retries);
        let again: Vec<usize> = (0..ranges.len()).filter(|&i| rerun(&rounds[i], write, retries)).collect();
        if again.iter().any(|&i| matches!(rounds[i], Round::Ran(Err(_)))) {
            self.retries = Some(retries - 1); // a chunk reruns after its helper died under it
        }
        let rest: Vec<F::Args> = again.iter().map(|&i| args[i].take().expect("each chunk once")).collect();
        let (done, total) = (ranges.len() - again.len(), ranges.len());
        if let (Some(p), true) = (progress.as_mut(), claimed) {
            p(done, total);
        }
        let progress = progress.map(|mut p| Box::new(move |d, _| p(done + d, total)) as Box<dyn FnMut(usize, usize)>);
        let (rx, count, cancel) = self.send_all::<F>(rest);
        let results = collect(self.pool, rx, count, cancel, progress); // every chunk has answered
        drop(claim);
        for (i, r) in again.into_iter().zip(results) {
            rounds[i] = Round::Ran(r);
        }
        let outcome = |round| match round {
            Round::Ran(r) => r.map(Some),
            Round::Lost => Ok(None),
            Round::Left => Err(Failed { error: TaskError::Terminated, started: false }), // never: all run above
        };
        Ok(ranges.into_iter().zip(rounds.into_iter().map(outcome)).collect())
    }

    /// The pass's chunks: as set, or guided (see [`cut`]).
    fn cut(&self, rows: usize, elements: usize, itemsize: usize) -> Vec<Range<usize>> {
        let fixed = match self.chunking {
            Chunking::Fixed(n) => Some(n),
            _ => None,
        };
        cut(rows, (elements / rows.max(1)).max(1) * itemsize, self.pool.helpers(), fixed)
    }
}

/// A pass's chunks of `rows` rows of `row_bytes` each, in row order (one
/// empty chunk for no rows): `fixed` rows each, or guided: each a share
/// of the rows still to cut (a `2 × helpers`-th), from `MAX_CHUNK_BYTES`
/// down to `MIN_CHUNK_BYTES`, and never so big that a helper gets none.
/// Helpers take chunks in this order as they come free, so big chunks go
/// first and small ones last: a helper the host delays holds only a
/// small chunk when the others run out, where equal chunks leave it a
/// long tail to finish alone.
fn cut(rows: usize, row_bytes: usize, helpers: usize, fixed: Option<usize>) -> Vec<Range<usize>> {
    if rows == 0 {
        return std::iter::once(0..0).collect();
    }
    let helpers = helpers.max(1);
    let least = MIN_CHUNK_BYTES.div_ceil(row_bytes).min(rows.div_ceil(helpers)).max(1);
    let most = (MAX_CHUNK_BYTES / row_bytes).max(least);
    let size = |left: usize| match fixed {
        Some(n) => n.max(1),
        None => left.div_ceil(2 * helpers).clamp(least, most),
    };
    let mut cuts = Vec::new();
    let mut start = 0;
    while start < rows {
        let end = (start + size(rows - start)).min(rows);
        cuts.push(start..end);
        start = end;
    }
    cuts
}

/// A progress callback that never goes back: a pass that reads counts a
/// chunk done when it finishes, and again when it reruns because its
/// result died with its helper.
fn monotonic<'p>(mut p: Box<dyn FnMut(usize, usize) + 'p>) -> Box<dyn FnMut(usize, usize) + 'p> {
    let mut shown = 0;
    Box::new(move |done, total| {
        if done > shown {
            shown = done;
            p(done, total);
        }
    })
}

/// Whether a chunk of the claiming round runs again: one never begun; in
/// a pass that reads, one whose result was lost, and (with `retries`
/// left) one whose helper died under it.
fn rerun<R>(round: &Round<R>, write: bool, retries: u32) -> bool {
    match round {
        Round::Left => true,
        Round::Lost => !write,
        Round::Ran(Err(Failed { error: TaskError::WorkerDied { .. }, started: true })) => !write && retries > 0,
        Round::Ran(_) => false,
    }
}

/// What a pass's chunks come to: `Ok`, or exactly which rows it changed.
fn finish_pass<R>(chunks: crate::Result<Vec<Chunk<R>>>) -> Result<(), InPlaceError> {
    let chunks = chunks.map_err(InPlaceError::Busy)?;
    match chunks.iter().all(|(_, r)| r.is_ok()) {
        true => Ok(()),
        false => Err(InPlaceError::Incomplete(report(chunks))),
    }
}

/// Folds chunk results in row order; the first failure ends it.
fn fold<R>(chunks: Vec<Chunk<R>>, mut combine: impl FnMut(R, R) -> R) -> Result<R, ReduceError> {
    let mut acc: Option<R> = None;
    for (rows, r) in chunks {
        let lost = Failed { error: TaskError::Terminated, started: true }; // never: a read reruns a lost result
        let value = r.and_then(|v| v.ok_or(lost)).map_err(|f| ReduceError::Failed { rows, error: f.error })?;
        acc = Some(match acc {
            Some(a) => combine(a, value),
            None => value,
        });
    }
    Ok(acc.expect("at least one chunk"))
}

/// What each chunk of a pass that did not complete came to.
fn report<R>(chunks: Vec<Chunk<R>>) -> RowReport {
    let mut report = RowReport::default();
    for (rows, result) in chunks {
        match result {
            Ok(_) => push_merged(&mut report.applied, rows),
            Err(Failed { started: false, .. }) => push_merged(&mut report.not_applied, rows),
            Err(Failed { error, started: true }) => match report.in_doubt.last_mut() {
                Some((last, e)) if last.end == rows.start && *e == error => last.end = rows.end,
                _ => report.in_doubt.push((rows, error)),
            },
        }
    }
    report
}

/// Appends `rows`, merged with the last range if they touch.
fn push_merged(list: &mut Vec<Range<usize>>, rows: Range<usize>) {
    match list.last_mut() {
        Some(last) if last.end == rows.start => last.end = rows.end,
        _ => list.push(rows),
    }
}

impl Pool {
    /// [`Batch::for_each_chunk_mut`] with default settings.
    pub fn for_each_chunk_mut<T, D, M, F>(&self, array: &mut SharedArray<T, D>, f: F) -> Result<(), InPlaceError>
    where
        T: Element,
        D: Dimension,
        M: WritesRows<T, D>,
        F: Task<M, Args = ChunkArgs>,
    {
        self.batch().for_each_chunk_mut(array, f)
    }

    /// [`Batch::reduce`] with default settings.
    pub fn reduce<T, D, R, M, F>(
        &self,
        array: &SharedArray<T, D>,
        f: F,
        combine: impl FnMut(R, R) -> R,
    ) -> Result<R, ReduceError>
    where
        T: Element,
        D: Dimension,
        M: ReadsRows<T, D>,
        F: Task<M, Args = ChunkArgs, Output = R>,
    {
        self.batch().reduce(array, f, combine)
    }

    /// [`Batch::for_each_chunk_mut_with`] with default settings.
    pub fn for_each_chunk_mut_with<T, D, P, M, F>(
        &self,
        array: &mut SharedArray<T, D>,
        f: F,
        param: P,
    ) -> Result<(), InPlaceError>
    where
        T: Element,
        D: Dimension,
        P: Clone,
        M: WritesRows<T, D>,
        F: Task<M, Args = (ChunkArgs, P)>,
    {
        self.batch().for_each_chunk_mut_with(array, f, param)
    }

    /// [`Batch::reduce_with`] with default settings.
    pub fn reduce_with<T, D, P, R, M, F>(
        &self,
        array: &SharedArray<T, D>,
        f: F,
        param: P,
        combine: impl FnMut(R, R) -> R,
    ) -> Result<R, ReduceError>
    where
        T: Element,
        D: Dimension,
        P: Clone,
        M: ReadsRows<T, D>,
        F: Task<M, Args = (ChunkArgs, P), Output = R>,
    {
        self.batch().reduce_with(array, f, param, combine)
    }

    /// [`Batch::sum`] with default settings.
    pub fn sum<T: Element, D: Dimension>(&self, array: &SharedArray<T, D>) -> Result<T::Sum, ReduceError> {
        self.batch().sum(array)
    }

    /// [`Batch::mean`] with default settings.
    pub fn mean<T: Element, D: Dimension>(&self, array: &SharedArray<T, D>) -> Result<f64, ReduceError> {
        self.batch().mean(array)
    }

    /// [`Batch::min`] with default settings.
    pub fn min<T: Element, D: Dimension>(&self, array: &SharedArray<T, D>) -> Result<Option<T>, ReduceError> {
        self.batch().min(array)
    }

    /// [`Batch::max`] with default settings.
    pub fn max<T: Element, D: Dimension>(&self, array: &SharedArray<T, D>) -> Result<Option<T>, ReduceError> {
        self.batch().max(array)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guided_chunks_cover_the_rows_once_big_first_and_small_last() {
        let row = 8usize; // one f64 per row
        let rows = (1usize << 30) / row;
        let cuts = cut(rows, row, 2, None);
        assert_eq!(cuts.first().map(|r| r.start), Some(0));
        assert!(cuts.windows(2).all(|w| w[0].end == w[1].start), "contiguous");
        assert_eq!(cuts.last().map(|r| r.end), Some(rows));
        let bytes: Vec<usize> = cuts.iter().map(|r| r.len() * row).collect();
        assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "never growing: {bytes:?}");
        assert_eq!(bytes[0], MAX_CHUNK_BYTES);
        assert_eq!(bytes[bytes.len() - 2], MIN_CHUNK_BYTES, "small at the end: {bytes:?}");
        // A small array still reaches both helpers; a set size is kept.
        assert_eq!(cut(10, 8, 2, None), [0..5, 5..10]);
        assert_eq!(cut(10, 8, 2, Some(4)), [0..4, 4..8, 8..10]);
        assert_eq!(cut(0, 8, 2, None), vec![Range { start: 0, end: 0 }]);
    }

    #[test]
    fn a_report_merges_neighbours_and_keeps_row_order() {
        let died = TaskError::WorkerDied { signal: Some(9), code: None };
        let chunks: Vec<Chunk<()>> = vec![
            (0..10, Ok(Some(()))),
            (10..20, Ok(None)),
            (20..30, Err(Failed { error: died.clone(), started: true })),
            (30..40, Err(Failed { error: TaskError::Cancelled, started: false })),
            (40..50, Ok(Some(()))),
            (50..60, Err(Failed { error: TaskError::Cancelled, started: false })),
        ];
        let r = report(chunks);
        assert_eq!(r.applied, [0..20, 40..50]);
        assert_eq!(r.not_applied, [30..40, 50..60]);
        assert_eq!(r.in_doubt, [(20..30, died)]);
        let text = r.to_string();
        assert!(text.contains("[0..20, 40..50] applied") && text.contains("20..30 in doubt"), "{text}");
    }
}
