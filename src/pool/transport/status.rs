//! Which job each helper has started, and which it must skip: per helper,
//! one status word and a small skip table in the pool's segment (see
//! `region`), written by the helper and its driver (or a cancelling
//! thread).
//!
//! A helper runs the jobs it is sent strictly in order, and writes each
//! job's result to its result ring before it starts the next. So when a
//! helper must be killed (its job timed out or was cancelled) or has died,
//! the word tells its driver exactly which job was running: that one alone
//! is blamed, jobs it finished are read from its ring, and jobs after it
//! never started and are safe to run elsewhere. Nothing is ever run twice
//! by mistake (an in-place job run twice would double its rows).
//!
//! The word is `job id << 3 | run << 2 | done << 1 | hold`.
//!
//! - The helper **begins** job `id` (the word becomes `id << 3`, after any
//!   hold is lifted), then sets **run**, then reads the job's skip entry:
//!   if the job was cancelled it skips it (answers `Skipped`), else it runs
//!   the task. It sets **done** once the result is written to its ring.
//! - A canceller **skips** job `id` by writing `id` into entry `id % 64`
//!   of the table, then holds the word (below). Both sides use sequentially
//!   consistent operations, so of "the helper set run, then read the
//!   entry" and "the canceller wrote the entry, then read the word", at
//!   least one sees the other's write: a canceller that reads no run bit
//!   for `id` knows the helper will see the entry and never run the task.
//!   If it reads the run bit, the task may be running: it kills.
//! - Before a kill the driver sets **hold** with one `fetch_or`, which also
//!   reads the running job and its bits; from then on the helper cannot
//!   begin another (it waits while `hold` is set), so a kill hits the job
//!   that was read, and if that one had already finished (or will skip)
//!   the driver clears `hold` and the helper goes on.
//!
//! Job ids grow for the life of the pool (across helper replacements), and
//! at most [`SKIPS`] jobs are in flight per helper, so the entry of a job
//! in flight holds either its own id or an older one, never a newer one's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Entries in a helper's skip table; also the deepest pipeline allowed.
pub(crate) const SKIPS: usize = 64;

const HOLD: u64 = 1;
const DONE: u64 = 2;
const RUN: u64 = 4;
const SHIFT: u32 = 3;

/// One helper's status word and skip table.
#[derive(Clone, Copy)]
pub(crate) struct Status<'a> {
    word: &'a AtomicU64,
    skips: &'a [AtomicU64],
}

/// What the word said when a driver held it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The last job begun (0 if none).
    pub job: u64,
    /// Its task body may have started (the helper passed its skip check).
    pub run: bool,
    /// Its result is written.
    pub done: bool,
}

/// What a driver wants of a job it holds the helper for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Cancelled: skipped if its body has not started, else killed.
    Cancel,
    /// Past its deadline: killed unless its result is written (even while
    /// the helper still reads its arguments).
    Timeout,
}

impl Seen {
    fn of(w: u64) -> Seen {
        Seen { job: w >> SHIFT, run: w & RUN != 0, done: w & DONE != 0 }
    }

    /// True if job `id` must be killed to stop as `stop` asks; false if it
    /// has finished, or (for a cancel) will never run its body.
    pub fn must_kill(&self, id: u64, stop: Stop) -> bool {
        let finished = self.job > id || (self.job == id && self.done);
        let body_started = self.job == id && self.run;
        match stop {
            Stop::Cancel => body_started && !self.done,
            Stop::Timeout => !finished,
        }
    }
}

impl<'a> Status<'a> {
    /// The status of a helper: its word and its [`SKIPS`] table entries.
    pub fn new(word: &'a AtomicU64, skips: &'a [AtomicU64]) -> Status<'a> {
        debug_assert_eq!(skips.len(), SKIPS);
        Status { word, skips }
    }

    /// Driver side: a new helper in this slot has started nothing yet.
    pub fn reset(&self) {
        self.word.store(0, Ordering::SeqCst);
        self.skips.iter().for_each(|s| s.store(0, Ordering::SeqCst));
    }

    fn entry(&self, id: u64) -> &AtomicU64 {
        &self.skips[(id % SKIPS as u64) as usize]
    }

    /// Helper side: records that job `id` begins, after any hold is
    /// lifted, then whether its body may run: false if it was cancelled
    /// (skip it). Call [`finish`](Self::finish) once its answer is written.
    pub fn begin(&self, id: u64) -> bool {
        let mut waited = 0u32;
        loop {
            let now = self.word.load(Ordering::Acquire);
            if now & HOLD == 0
                && self.word.compare_exchange(now, id << SHIFT, Ordering::SeqCst, Ordering::Acquire).is_ok()
            {
                break;
            }
            // Held: the driver is deciding whether to kill this helper, which
            // takes microseconds; wait without burning a core if it is longer.
            waited += 1;
            match waited < 100 {
                true => std::hint::spin_loop(),
                false => std::thread::sleep(Duration::from_micros(50)),
            }
        }
        self.word.fetch_or(RUN, Ordering::SeqCst);
        // 0 is an empty entry (and job 0, the initializer, is never cancelled).
        id == 0 || self.entry(id).load(Ordering::SeqCst) != id
    }

    /// Helper side: job `id`'s answer is written; killing the helper now
    /// would lose nothing of it.
    pub fn finish(&self, id: u64) {
        let _ = self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| (w >> SHIFT == id).then_some(w | DONE));
    }

    /// Helper side: job `id`, begun, is skipped (its body never runs): its
    /// run bit goes, so that a death before its `Skipped` is written blames
    /// nothing that ran.
    pub fn skipping(&self, id: u64) {
        let _ = self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| (w >> SHIFT == id).then_some(w & !RUN));
    }

    /// Canceller side: job `id` must not run its body if it has not yet.
    pub fn skip(&self, id: u64) {
        self.entry(id).store(id, Ordering::SeqCst);
    }

    /// Driver side: stops the helper from beginning another job and says
    /// what it was doing.
    pub fn hold(&self) -> Seen {
        Seen::of(self.word.fetch_or(HOLD, Ordering::SeqCst))
    }

    /// Driver side: lets the helper go on after a [`hold`](Self::hold)
    /// that killed nothing.
    pub fn release(&self) {
        self.word.fetch_and(!HOLD, Ordering::SeqCst);
    }

    /// Driver side, once the helper is dead: what it was doing last.
    pub fn last(&self) -> Seen {
        Seen::of(self.word.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (AtomicU64, Vec<AtomicU64>) {
        (AtomicU64::new(0), (0..SKIPS).map(|_| AtomicU64::new(0)).collect())
    }

    #[test]
    fn a_hold_freezes_the_helper_between_jobs_and_reports_the_running_one() {
        let (word, skips) = table();
        let status = Status::new(&word, &skips);
        assert!(status.begin(7));
        assert_eq!(status.hold(), Seen { job: 7, run: true, done: false });
        let waiter = std::thread::scope(|s| {
            let t = s.spawn(|| status.begin(8));
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(status.last().job, 7, "held: job 8 must not begin");
            status.release();
            t.join()
        });
        assert!(waiter.unwrap());
        assert_eq!(status.last(), Seen { job: 8, run: true, done: false });
        status.finish(8);
        assert_eq!(status.hold(), Seen { job: 8, run: true, done: true });
        status.release();
        status.finish(7);
        assert_eq!(status.last().job, 8, "a stale finish changes nothing");
        status.reset();
        assert_eq!(status.last(), Seen { job: 0, run: false, done: false });
    }

    #[test]
    fn a_skipped_job_begins_but_never_runs_and_old_entries_skip_nothing() {
        let (word, skips) = table();
        let status = Status::new(&word, &skips);
        status.skip(3);
        assert!(!status.begin(3), "cancelled before it began: skipped");
        status.finish(3);
        assert!(status.begin(3 + SKIPS as u64), "the entry names job 3, not this one");
        let seen = status.hold();
        assert!(!seen.must_kill(3, Stop::Cancel) && !seen.must_kill(3, Stop::Timeout), "long past");
        assert!(seen.must_kill(67, Stop::Cancel), "its body runs");
        assert!(!seen.must_kill(68, Stop::Cancel), "not begun: it will be skipped");
        assert!(seen.must_kill(68, Stop::Timeout), "a timeout stops even a job being received");
    }
}
