//! Claims: what makes a `SharedArray` view safe to hold.
//!
//! A view claims the bytes it covers with an open-file-description lock
//! (`fcntl(2)` `F_OFD_SETLK`) through its handle's own open file: shared
//! for read-only views, exclusive for mutable ones. The kernel checks
//! every claim against every other open file of the segment, in this
//! process and in every other one, so a mutable view never coexists with
//! any other view of the same bytes made through shmkit, and a process
//! that dies drops its claims with its files. A conflict is an error
//! (`Error::Busy`), never a wait: waiting could deadlock two processes
//! that each hold what the other wants.

use std::ops::Range;
use std::sync::Mutex;

use crate::os::{self, LockKind};
use crate::segment::Segment;
use crate::{Error, Result};

/// One handle's claims: how many shared views it has out. (Its mutable
/// views borrow the handle exclusively, so there is at most one, alone.)
#[derive(Debug, Default)]
pub(crate) struct Claims {
    shared: Mutex<usize>,
}

/// A claim held by a live view; released when the view is dropped.
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    seg: &'a Segment,
    claims: &'a Claims,
    shared: bool,
}

impl Claims {
    /// Claims `bytes` (offsets within the data) for a view; `what` says
    /// what was asked for, in the error.
    pub fn take<'a>(
        &'a self,
        seg: &'a Segment,
        bytes: Range<usize>,
        shared: bool,
        what: &dyn std::fmt::Display,
    ) -> Result<Claim<'a>> {
        // Shared views of one handle can overlap each other; the count says
        // when the last is gone. Held across the lock call, so a release
        // never races a claim of the same handle.
        seg.check_process()?;
        let mut count = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if !bytes.is_empty() {
            let kind = if shared { LockKind::Shared } else { LockKind::Exclusive };
            let start = (seg.layout().data_offset + bytes.start) as u64;
            let got = os::try_lock(seg.fd(), kind, start, bytes.len() as u64);
            let got = got.map_err(|e| Error::from_io("fcntl(F_OFD_SETLK)", seg.name(), e))?;
            if !got {
                return Err(Error::Busy { name: seg.name().to_owned(), what: what.to_string() });
            }
        }
        *count += usize::from(shared);
        Ok(Claim { seg, claims: self, shared })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.seg.check_process().is_err() {
            return; // a forked child's copy of its parent's view: the claim is the parent's
        }
        let mut count = self.claims.shared.lock().unwrap_or_else(|e| e.into_inner());
        if self.shared {
            *count -= 1;
            if *count > 0 {
                return; // other shared views of this handle still need theirs
            }
        }
        // Every claim of this handle goes: none of its views is left.
        let (start, len) = (self.seg.layout().data_offset as u64, self.seg.data_len() as u64);
        if len > 0 {
            let _ = os::unlock(self.seg.fd(), start, len);
        }
    }
}

/// One handle's claims when nothing in the language keeps them apart (a
/// [`DynArray`](super::DynArray) behind Python, where a handle may hold
/// any number of claims at once): each is listed with its bytes, checked
/// against the handle's other claims (the kernel does not check one open
/// file against itself), and released exactly, leaving the other claims'
/// bytes locked.
#[derive(Debug, Default)]
pub(crate) struct ClaimSet {
    /// The last number given, and the claims held: number, bytes (offsets
    /// in the file), exclusive.
    held: Mutex<(u64, Vec<Held>)>,
}

/// A claim a [`ClaimSet`] holds: its number, bytes, and whether exclusive.
type Held = (u64, Range<u64>, bool);

impl ClaimSet {
    /// Claims `bytes` (offsets within the data), exclusively or not;
    /// returns the claim's number, for [`release`](Self::release).
    pub fn take(
        &self,
        seg: &Segment,
        bytes: Range<usize>,
        exclusive: bool,
        what: &dyn std::fmt::Display,
    ) -> Result<u64> {
        seg.check_process()?;
        let busy = || Error::Busy { name: seg.name().to_owned(), what: what.to_string() };
        let at = seg.layout().data_offset as u64;
        let range = at + bytes.start as u64..at + bytes.end as u64;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let overlaps = |r: &Range<u64>| r.start < range.end && range.start < r.end;
        if held.1.iter().any(|(_, r, x)| (exclusive || *x) && overlaps(r) && !range.is_empty()) {
            return Err(busy()); // against this handle's own claims
        }
        if !range.is_empty() {
            let kind = if exclusive { LockKind::Exclusive } else { LockKind::Shared };
            let got = os::try_lock(seg.fd(), kind, range.start, range.end - range.start);
            if !got.map_err(|e| Error::from_io("fcntl(F_OFD_SETLK)", seg.name(), e))? {
                return Err(busy());
            }
        }
        held.0 += 1;
        let id = held.0;
        held.1.push((id, range, exclusive));
        Ok(id)
    }

    /// Releases claim `id`: unlocks its bytes but those another claim of
    /// this handle still covers (only shared claims overlap, and they keep
    /// their shared lock). Unknown ids, and calls in a forked child (whose
    /// claims are its parent's), do nothing.
    pub fn release(&self, seg: &Segment, id: u64) {
        if seg.check_process().is_err() {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let Some(k) = held.1.iter().position(|(i, _, _)| *i == id) else { return };
        let (_, range, _) = held.1.swap_remove(k);
        let mut pieces = vec![range];
        for (_, other, _) in &held.1 {
            pieces = pieces.into_iter().flat_map(|p| minus(p, other)).collect();
        }
        for p in pieces.into_iter().filter(|p| !p.is_empty()) {
            let _ = os::unlock(seg.fd(), p.start, p.end - p.start);
        }
    }
}

/// `a` without `b`: up to two pieces.
fn minus(a: Range<u64>, b: &Range<u64>) -> Vec<Range<u64>> {
    if b.end <= a.start || a.end <= b.start {
        return vec![a];
    }
    let mut out = Vec::new();
    if a.start < b.start {
        out.push(a.start..b.start);
    }
    if b.end < a.end {
        out.push(b.end..a.end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::minus;

    #[test]
    fn minus_leaves_what_the_other_range_does_not_cover() {
        assert_eq!(minus(0..10, &(3..5)), [0..3, 5..10]);
        assert_eq!(minus(0..10, &(0..10)), Vec::<std::ops::Range<u64>>::new());
        assert_eq!(minus(0..10, &(8..20)), vec![(0..8)]);
        assert_eq!(minus(4..6, &(0..2)), vec![(4..6)]);
    }
}
