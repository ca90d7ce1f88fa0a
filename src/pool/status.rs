//! Which job each helper has started: one word per helper in the pool's
//! segment (see `region`), written by the helper, read by its driver.
//!
//! A helper runs the jobs it is sent strictly in order, and writes each
//! job's result to its result ring before it starts the next. So when a helper
//! must be killed (its job timed out or was cancelled) or has died, the
//! word tells its driver exactly which job was running: that one alone is
//! blamed, jobs it finished are read from its ring, and jobs after it
//! never started and are safe to run elsewhere. Nothing is ever run twice
//! by mistake (an in-place job run twice would double its rows).
//!
//! The word is `job id << 2 | done << 1 | hold`. The helper sets `done`
//! once the job's result is written to its ring. Before a kill the
//! driver sets `hold` with one atomic `fetch_or`, which also reads the
//! running job and whether it is done; from then on the helper cannot
//! start another (it waits while `hold` is set), so the kill hits the job
//! that was read, and if that one had already finished the driver clears
//! `hold` and the helper goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Driver side: a new helper in this slot has started nothing yet.
pub(crate) fn reset(word: &AtomicU64) {
    word.store(0, Ordering::Release);
}

const HOLD: u64 = 1;
const DONE: u64 = 2;

/// Helper side: records that job `id` starts now, after any hold is lifted.
pub(crate) fn begin(word: &AtomicU64, id: u64) {
    let mut waited = 0u32;
    loop {
        let now = word.load(Ordering::Acquire);
        if now & HOLD == 0 && word.compare_exchange(now, id << 2, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return;
        }
        // Held: the driver is deciding whether to kill this helper, which
        // takes microseconds; wait without burning a core if it is longer.
        waited += 1;
        match waited < 100 {
            true => std::hint::spin_loop(),
            false => std::thread::sleep(Duration::from_micros(50)),
        }
    }
}

/// Helper side: job `id`'s result is written; killing the helper now
/// would lose nothing of it.
pub(crate) fn finish(word: &AtomicU64, id: u64) {
    let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| (w >> 2 == id).then_some(w | DONE));
}

/// Driver side: stops the helper from starting another job and returns
/// the last job it started (0 if none) and whether that one is done.
pub(crate) fn hold(word: &AtomicU64) -> (u64, bool) {
    let w = word.fetch_or(HOLD, Ordering::AcqRel);
    (w >> 2, w & DONE != 0)
}

/// Driver side: lets the helper go on after a [`hold`] that killed nothing.
pub(crate) fn release(word: &AtomicU64) {
    word.fetch_and(!HOLD, Ordering::AcqRel);
}

/// Driver side, once the helper is dead: the last job it started, and
/// whether it was done.
pub(crate) fn last_started(word: &AtomicU64) -> (u64, bool) {
    let w = word.load(Ordering::Acquire);
    (w >> 2, w & DONE != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_freezes_the_helper_between_jobs_and_reports_the_running_one() {
        let region = super::super::region::Region::create(2).unwrap();
        let word = region.word(1).unwrap();
        assert!(region.word(2).is_none());
        begin(word, 7);
        assert_eq!(hold(word), (7, false));
        let waiter = std::thread::scope(|s| {
            let t = s.spawn(|| begin(word, 8));
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(last_started(word), (7, false), "held: job 8 must not start");
            release(word);
            t.join()
        });
        assert!(waiter.is_ok());
        assert_eq!(last_started(word), (8, false));
        finish(word, 8);
        assert_eq!(hold(word), (8, true), "done, and held");
        release(word);
        finish(word, 7);
        assert_eq!(last_started(word), (8, true), "a stale finish changes nothing");
        reset(word);
        assert_eq!(last_started(word), (0, false));
    }
}
