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
//! state: pass << 32 | claimer << 16 | FREE 0 · CLAIMED 1 · DONE 2
//! ```
//!
//! - The coordinator **resets** a table for a pass: each chunk's rows and
//!   the state `FREE(pass)`, `next` 0, all before any job of the pass is
//!   sent (the job ring's release and acquire publish them).
//! - A helper **claims** by taking an index with `next.fetch_add`, then
//!   moving that chunk from `FREE(pass)` to `CLAIMED(pass, claimer)` with
//!   one compare-and-swap, **before** it touches a row; once the chunk's
//!   result is encoded it moves it to `DONE(pass, claimer)`. So after a
//!   helper dies the table says, for every chunk, whether it was never
//!   begun (free), begun and perhaps half-done (claimed), or finished
//!   (done): nothing is run twice by mistake, and nothing is lost.
//! - The pass number in every state makes a stale claim fail: a job of
//!   an earlier pass that runs late (its helper killed but not yet gone)
//!   finds states of another pass and stops. A late `fetch_add` can only
//!   leave a chunk free, which the coordinator then runs another way.
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
        for (i, rows) in chunks.iter().enumerate() {
            self.entries[3 * i + 1].store(rows.start as u64, Ordering::Relaxed);
            self.entries[3 * i + 2].store(rows.end as u64, Ordering::Relaxed);
            self.entries[3 * i].store(word(pass, 0, FREE), Ordering::Relaxed);
        }
        self.next.store(0, Ordering::Release);
    }

    /// Claims the next free chunk of pass `pass` (of `count` chunks) for
    /// `claimer`: its index and rows, recorded as claimed before this
    /// returns. `None` when none is left, or the table is another pass's.
    pub fn claim(&self, pass: u32, claimer: u16, count: usize) -> Option<(usize, Range<usize>)> {
        let i = usize::try_from(self.next.fetch_add(1, Ordering::SeqCst)).ok()?;
        if i >= count.min(CHUNKS) {
            return None;
        }
        let state = &self.entries[3 * i];
        let claimed = word(pass, claimer, CLAIMED);
        state.compare_exchange(word(pass, 0, FREE), claimed, Ordering::SeqCst, Ordering::SeqCst).ok()?;
        let start = self.entries[3 * i + 1].load(Ordering::Relaxed) as usize;
        let end = self.entries[3 * i + 2].load(Ordering::Relaxed) as usize;
        Some((i, start..end)) // checked against the array where it is used
    }

    /// Marks chunk `i`, claimed by `claimer` in pass `pass`, done.
    pub fn finish(&self, i: usize, pass: u32, claimer: u16) {
        if let Some(state) = self.entries.get(3 * i) {
            let (from, to) = (word(pass, claimer, CLAIMED), word(pass, claimer, DONE));
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
        t.finish(0, 7, 0);
        t.finish(1, 7, 0); // not its claim: nothing changes
        assert_eq!((t.state(0, 7), t.state(1, 7), t.state(2, 7)), (State::Done(0), State::Claimed(1), State::Free));
        assert_eq!(t.claim(7, 0, 3), Some((2, 20..25)));
        assert_eq!(t.claim(7, 1, 3), None, "all taken");
        assert_eq!(t.state(0, 8), State::Foreign, "another pass's states are not this one's");
    }

    #[test]
    fn a_late_claim_of_an_earlier_pass_takes_nothing() {
        let (next, entries) = words();
        let t = Table::new(&next, &entries);
        t.reset(1, &[0..4, 4..8]);
        t.reset(2, &[0..2, 2..8]);
        assert_eq!(t.claim(1, 0, 2), None, "pass 1 is over");
        assert_eq!(t.state(0, 2), State::Free, "left free: its pass runs it another way");
        assert_eq!(t.claim(2, 0, 2), Some((1, 2..8)));
        assert_eq!(t.claim(2, 0, 5000), None, "a count past the table stops at its end");
    }
}
