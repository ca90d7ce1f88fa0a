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
