//! `SlotTable`: numbered places in a segment that processes take and give
//! back, each held through a liveness lock (see `liveness`), so that a
//! place whose holder died, however it died, is free again and is seen to
//! be: reader slots of a reader-writer lock, a queue's senders and
//! receivers, a list's pushers, a stream's subscribers.
//!
//! Each slot has a byte in the segment, set while taken (so a scan asks
//! the kernel only about slots in use), and a lock byte past the end of
//! the file. The kernel never reports an open file's own locks back to
//! it, and the handles of one process may share one open file, so the
//! slots this process holds are also kept here, in a bitmap.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::liveness::{self, Presence};
use super::Segment;

/// Slots a table may have.
pub(crate) const MAX: usize = 1024;

/// A table of `n` slots: their bytes at `at` of the segment's data, their
/// lock bytes from `locks` (offsets past the end of the file).
pub(crate) struct SlotTable {
    at: usize,
    n: usize,
    locks: u64,
    own: Mutex<[u64; MAX / 64]>,
}

impl SlotTable {
    /// The table of `n` slots (at most [`MAX`]) described above.
    pub fn new(at: usize, n: usize, locks: u64) -> SlotTable {
        assert!(n <= MAX, "{n} slots");
        SlotTable { at, n, locks, own: Mutex::new([0; MAX / 64]) }
    }

    fn own(&self) -> MutexGuard<'_, [u64; MAX / 64]> {
        // The bitmap is changed in single statements: consistent after a panic.
        self.own.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn byte<'s>(&self, seg: &'s Segment, i: usize) -> &'s AtomicU8 {
        seg.atomic_u8(self.at + i)
    }

    /// Takes a free slot (one never taken, given back, or whose holder is
    /// gone) for this process; `None` if all `n` are held.
    pub fn take(&self, seg: &Segment) -> Option<usize> {
        let mut own = self.own();
        let i = (0..self.n)
            .filter(|&i| own[i / 64] & (1 << (i % 64)) == 0)
            .find(|&i| liveness::take_over(seg.fd(), self.locks + i as u64))?;
        self.byte(seg, i).store(1, Ordering::SeqCst);
        own[i / 64] |= 1 << (i % 64);
        Some(i)
    }

    /// As [`take`](Self::take), for handles that fail when the table is
    /// full rather than wait. A dead holder's slot is locked for a moment
    /// by whoever tidies it (see [`held_elsewhere`](Self::held_elsewhere)):
    /// finding every slot locked, this looks twice more, a millisecond and
    /// then five later, before it believes the table full. A tidier
    /// preempted for longer still makes a table with a free slot look
    /// full: rare, and said as `TooManyHandles`, never a wrong slot.
    /// (Telling "being tidied" from "held" would need a second lock byte
    /// per slot.)
    pub fn take_patiently(&self, seg: &Segment) -> Option<usize> {
        for pause in [0, 1, 5] {
            std::thread::sleep(std::time::Duration::from_millis(pause));
            if let Some(i) = self.take(seg) {
                return Some(i);
            }
        }
        None
    }

    /// Gives slot `i` back (taken by [`take`](Self::take) in this process).
    /// Does nothing in a forked child: the slot is its parent's.
    pub fn give_back(&self, seg: &Segment, i: usize) {
        if seg.check_process().is_err() {
            return;
        }
        let mut own = self.own();
        self.byte(seg, i).store(0, Ordering::SeqCst);
        let _ = liveness::withdraw(seg.fd(), self.locks + i as u64);
        own[i / 64] &= !(1 << (i % 64));
    }

    /// True if slot `i`'s byte is set: held, or its holder died and no one
    /// has looked since. No system call: for scans that check liveness only
    /// where it matters.
    pub fn in_use(&self, seg: &Segment, i: usize) -> bool {
        assert!(i < self.n, "slot {i} of {}", self.n);
        self.byte(seg, i).load(Ordering::SeqCst) != 0
    }

    /// Slots held by live processes (this one's included), asking the
    /// kernel about each slot in use; tidies nothing: for reports.
    pub fn count_alive(&self, seg: &Segment) -> usize {
        let own = *self.own();
        (0..self.n)
            .filter(|&i| {
                own[i / 64] & (1 << (i % 64)) != 0
                    || (self.in_use(seg, i) && liveness::presence(seg.fd(), self.locks + i as u64) != Presence::Gone)
            })
            .count()
    }

    /// True if this process holds any slot.
    pub fn held_here(&self) -> bool {
        self.own().iter().any(|&w| w != 0)
    }

    /// True if any slot is held, here or by another live process. A slot
    /// whose holder is gone is tidied (its byte cleared) on the way; one
    /// whose lock cannot be read counts as held.
    pub fn any_held(&self, seg: &Segment) -> bool {
        self.held_here() || (0..self.n).any(|i| self.held_elsewhere(seg, i))
    }

    /// True if another live process holds slot `i`.
    pub fn held_elsewhere(&self, seg: &Segment, i: usize) -> bool {
        let byte = self.byte(seg, i);
        if seg.check_process().is_err() {
            // A forked child's bitmap is its parent's, and its locks are
            // not: it tidies nothing.
            return byte.load(Ordering::SeqCst) != 0;
        }
        if byte.load(Ordering::SeqCst) == 0 {
            return false;
        }
        if liveness::presence(seg.fd(), self.locks + i as u64) != Presence::Gone {
            return true;
        }
        // Its holder is gone: tidy the byte, holding the slot's lock while
        // doing so (and this process's bitmap, for takers here), so that a
        // process taking the slot meanwhile is never cleared away.
        let own = self.own();
        if own[i / 64] & (1 << (i % 64)) != 0 {
            return false; // taken here since: not another process's
        }
        if !liveness::take_over(seg.fd(), self.locks + i as u64) {
            return true; // taken by another process since
        }
        byte.store(0, Ordering::SeqCst);
        let _ = liveness::withdraw(seg.fd(), self.locks + i as u64);
        drop(own);
        false
    }

    /// True if slot `i` is held here or by another live process.
    pub fn is_held(&self, seg: &Segment, i: usize) -> bool {
        self.own()[i / 64] & (1 << (i % 64)) != 0 || self.held_elsewhere(seg, i)
    }
}
