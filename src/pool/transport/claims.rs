//! Claim tables: how the helpers of an array pass share its chunks
//! without a message per chunk.
//!
//! A pass that claims sends one job per helper instead of one per chunk.
//! Each helper then takes chunk after chunk from a table in the pool's
//! segment (`region`) until none is left, so a helper the host delays
//! simply takes fewer: nobody waits for a driver's thread between chunks.
//!
//! ```text
//! table: next: u64 (padded to 64 bytes) | CHUNKS × (state, start, end: u64)
//! state: pass << 32 | claimer << 16 | FREE 0 · CLAIMED 1 · DONE 2 · FAILED 3 · CLOSED 4
//! ```
//!
//! - The coordinator **resets** a table for a pass: each chunk's rows and
//!   the state `FREE(pass)`, `next` 0, all before any job of the pass is
//!   sent (the job ring's release and acquire publish them).
//! - A helper **claims** by taking an index with `next.fetch_add`, then
//!   moving that chunk from `FREE(pass)` to `CLAIMED(pass, claimer)` with
//!   one compare-and-swap, **before** it touches a row; once the chunk's
//!   result is encoded it moves it to `DONE(pass, claimer)`, or to
//!   `FAILED` if the task failed (it may have written some rows). So after
//!   a helper dies the table says, for every chunk, whether it was never
//!   begun (free), begun and perhaps half-done (claimed, failed), or
//!   finished (done): nothing is run twice by mistake, and nothing is lost.
//! - Once every job of the pass has answered, the coordinator **closes**
//!   the table (every free chunk `CLOSED`, `next` past the end) before it
//!   reads it: a claimer that outlived its answer (its helper not yet
//!   gone) can claim nothing from then on, so what the coordinator reads
//!   is final, and a chunk it runs another way is nobody else's.
//! - The pass number in every state makes a stale claim fail: a job of
//!   an earlier pass that runs late finds states of another pass (or
//!   closed ones) and stops; a claimer reads a chunk's rows before its
//!   compare-and-swap, so rows it runs are always its own pass's. A late
//!   `fetch_add` can only leave a chunk free, which the coordinator then
//!   runs another way.
//!
//! Everything here is written by other processes: indices are checked
//! against the table, and the coordinator reads states as claims, never
//! as facts about memory.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tables in a pool's segment: passes running at once beyond this use
/// a message per chunk.
pub(crate) const TABLES: usize = 4;
/// Chunks per table: a pass of more chunks uses a message per chunk.
pub(crate) const CHUNKS: usize = 1024;
/// Bytes of one table.
pub(crate) const TABLE_BYTES: usize = 64 + CHUNKS * 3 * 8;

const FREE: u64 = 0;
const CLAIMED: u64 = 1;
const DONE: u64 = 2;
const FAILED: u64 = 3;
const CLOSED: u64 = 4;

/// One claim table in the pool's segment.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    next: &'a AtomicU64,
    /// `CHUNKS` entries of three words: state, first row, end row.
    entries: &'a [AtomicU64],
}

/// What a chunk's state word says, for the pass the reader means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Never begun.
    Free,
    /// Begun by this claimer (a job of the pass), perhaps not finished.
    Claimed(u16),
    /// Finished by this claimer; its result is in that job's answer.
    Done(u16),
    /// Run by this claimer, whose task failed (perhaps after writing some
    /// rows); its failure is in that job's answer.
    Failed(u16),
    /// Never begun, and closed to claims (see [`Table::close`]).
    Closed,
    /// Not a state of this pass (written by something else).
    Foreign,
}

fn word(pass: u32, claimer: u16, state: u64) -> u64 {
    (pass as u64) << 32 | (claimer as u64) << 16 | state
}

impl<'a> Table<'a> {
    /// The table over these words (`next`, then `3 × CHUNKS` entries).
    pub fn new(next: &'a AtomicU64, entries: &'a [AtomicU64]) -> Table<'a> {
        assert_eq!(entries.len(), 3 * CHUNKS, "a claim table has {CHUNKS} entries");
        Table { next, entries }
    }

    /// Prepares the table for pass `pass` (never 0) over `chunks` (at
    /// most [`CHUNKS`]): every chunk free. Called by the coordinator while
    /// no job of another pass can claim here.
    pub fn reset(&self, pass: u32, chunks: &[Range<usize>]) {
        assert!(chunks.len() <= CHUNKS && pass != 0);
        // Only the pass's own entries: every earlier pass was closed (see
        // `close`; a lease closes its pass when dropped), so no entry past
        // them is free for any pass, and no claim can succeed there.
        for (i, rows) in chunks.iter().enumerate() {
            self.entries[3 * i + 1].store(rows.start as u64, Ordering::Relaxed);
            self.entries[3 * i + 2].store(rows.end as u64, Ordering::Relaxed);
            self.entries[3 * i].store(word(pass, 0, FREE), Ordering::Relaxed);
        }
        self.next.store(0, Ordering::Release);
    }

    /// Closes pass `pass` of `count` chunks to claims: every chunk still
    /// free becomes closed, and later `fetch_add`s land past the end.
    /// After this no state of the pass changes except a claimed chunk's
    /// to done or failed.
    pub fn close(&self, pass: u32, count: usize) {
        self.next.store(u64::MAX / 2, Ordering::SeqCst);
        for state in self.entries.chunks(3).take(count.min(CHUNKS)).map(|e| &e[0]) {
            let (free, closed) = (word(pass, 0, FREE), word(pass, 0, CLOSED));
            let _ = state.compare_exchange(free, closed, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// Claims the next free chunk of pass `pass` (of `count` chunks) for
    /// `claimer`: its index and rows, recorded as claimed before this
    /// returns. `None` when none is left, or the table is another pass's.
    pub fn claim(&self, pass: u32, claimer: u16, count: usize) -> Option<(usize, Range<usize>)> {
        let i = usize::try_from(self.next.fetch_add(1, Ordering::SeqCst)).ok()?;
        if i >= count.min(CHUNKS) {
            return None;
        }
        // The rows first: once the claim below succeeds they are this
        // pass's (a reset for another pass comes only after a close,
        // which makes that claim fail).
        let start = self.entries[3 * i + 1].load(Ordering::SeqCst) as usize;
        let end = self.entries[3 * i + 2].load(Ordering::SeqCst) as usize;
        let state = &self.entries[3 * i];
        let claimed = word(pass, claimer, CLAIMED);
        state.compare_exchange(word(pass, 0, FREE), claimed, Ordering::SeqCst, Ordering::SeqCst).ok()?;
        Some((i, start..end)) // checked against the array where it is used
    }

    /// Marks chunk `i`, claimed by `claimer` in pass `pass`, done (or
    /// failed, if its task did not succeed).
    pub fn finish(&self, i: usize, pass: u32, claimer: u16, ok: bool) {
        if let Some(state) = self.entries.get(3 * i) {
            let to = word(pass, claimer, if ok { DONE } else { FAILED });
            let from = word(pass, claimer, CLAIMED);
            let _ = state.compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// Chunk `i`'s state as pass `pass` sees it.
    pub fn state(&self, i: usize, pass: u32) -> State {
        let Some(w) = self.entries.get(3 * i).map(|s| s.load(Ordering::SeqCst)) else { return State::Foreign };
        let claimer = (w >> 16) as u16;
        match (w >> 32 == pass as u64, w & 0xffff, claimer) {
            (true, FREE, 0) => State::Free,
            (true, CLAIMED, c) => State::Claimed(c),
            (true, DONE, c) => State::Done(c),
            (true, FAILED, c) => State::Failed(c),
            (true, CLOSED, 0) => State::Closed,
            _ => State::Foreign,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words() -> (AtomicU64, Vec<AtomicU64>) {
        (AtomicU64::new(0), (0..3 * CHUNKS).map(|_| AtomicU64::new(0)).collect())
    }

    #[test]
    fn each_chunk_is_claimed_once_and_its_state_tells_who_and_how_far() {
        let (next, entries) = words();
        let t = Table::new(&next, &entries);
        t.reset(7, &[0..10, 10..20, 20..25]);
        assert_eq!(t.claim(7, 0, 3), Some((0, 0..10)));
        assert_eq!(t.claim(7, 1, 3), Some((1, 10..20)));
        assert_eq!(t.state(0, 7), State::Claimed(0));
        t.finish(0, 7, 0, true);
        t.finish(1, 7, 0, true); // not its claim: nothing changes
        assert_eq!((t.state(0, 7), t.state(1, 7), t.state(2, 7)), (State::Done(0), State::Claimed(1), State::Free));
        t.finish(1, 7, 1, false);
        assert_eq!(t.state(1, 7), State::Failed(1));
        assert_eq!(t.claim(7, 0, 3), Some((2, 20..25)));
        assert_eq!(t.claim(7, 1, 3), None, "all taken");
        assert_eq!(t.state(0, 8), State::Foreign, "another pass's states are not this one's");
    }

    #[test]
    fn a_late_claim_of_an_earlier_pass_takes_nothing() {
        let (next, entries) = words();
        let t = Table::new(&next, &entries);
        t.reset(1, &[0..4, 4..8]);
        t.close(1, 2);
        t.reset(2, &[0..2, 2..8]);
        assert_eq!(t.claim(1, 0, 2), None, "pass 1 is over");
        assert_eq!(t.state(0, 2), State::Free, "left free: its pass runs it another way");
        assert_eq!(t.claim(2, 0, 2), Some((1, 2..8)));
        assert_eq!(t.claim(2, 0, 5000), None, "a count past the table stops at its end");
        t.close(2, 2);
        t.reset(3, &[0..1, 1..2]);
        assert_eq!(t.claim(2, 0, 2), None, "a closed pass takes nothing, in entries past the next pass's too");
    }

    #[test]
    fn a_closed_pass_takes_no_more_claims_and_keeps_what_was_claimed() {
        let (next, entries) = words();
        let t = Table::new(&next, &entries);
        t.reset(4, &[0..1, 1..2, 2..3]);
        assert_eq!(t.claim(4, 0, 3), Some((0, 0..1)));
        t.close(4, 3);
        assert_eq!(t.claim(4, 1, 3), None, "closed");
        assert_eq!((t.state(0, 4), t.state(1, 4), t.state(2, 4)), (State::Claimed(0), State::Closed, State::Closed));
        t.finish(0, 4, 0, true);
        assert_eq!(t.state(0, 4), State::Done(0), "a claimer still finishes what it holds");
    }
}
