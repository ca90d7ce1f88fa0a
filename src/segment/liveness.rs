//! Who is alive, told by locks: the one place shmkit decides whether the
//! process behind a segment (or behind a reader slot) is still there.
//!
//! A process *announces* itself by holding an open-file-description lock
//! (`fcntl(2)`, `F_OFD_SETLK`) on one byte of a segment through its own
//! open file; any lock there, shared or exclusive, means "alive". The
//! kernel drops that lock when the open file is released (its last fd
//! closed and its last mapping unmapped), which happens however the
//! process ends, SIGKILL included. So "the byte is locked" means "the announcer is
//! alive", with no pid involved: no pid reuse, zombie or PID namespace can
//! fool it. Lock bytes may lie past the end of the file (POSIX allows it),
//! so they never overlap the data.

use std::io;

use rustix::fd::AsFd;

use crate::os::{self, LockKind};

/// The byte a segment's creator holds for as long as its handle lives.
pub(crate) const CREATOR: u64 = 1 << 62;

/// First byte of the per-slot announcements primitives make (see
/// `slots`): each table of a segment takes its own range from here.
pub(crate) const SLOTS: u64 = (1 << 62) + 4096;

/// What a lock byte says of its announcer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Its handle is open in a running process.
    Alive,
    /// It has gone: the process ended, or closed the handle.
    Gone,
    /// The lock could not be read (permissions, an unusual filesystem).
    /// Never taken for `Gone`.
    Unknown,
}

/// Holds a shared lock on byte `at` through `fd`, announcing this open
/// file; false if someone is taking the byte over. Shared, so that a
/// second open file of the same process can announce before the first
/// withdraws (see `Segment::create`), with no instant where no one does.
pub(crate) fn announce(fd: impl AsFd, at: u64) -> io::Result<bool> {
    os::try_lock(fd, LockKind::Shared, at, 1)
}

/// Holds byte `at` exclusively through `fd`; false if anyone else holds
/// it. For slots that only one open file may announce in at a time.
pub(crate) fn claim(fd: impl AsFd, at: u64) -> io::Result<bool> {
    os::try_lock(fd, LockKind::Exclusive, at, 1)
}

/// Stops announcing at byte `at`.
pub(crate) fn withdraw(fd: impl AsFd, at: u64) -> io::Result<()> {
    os::unlock(fd, at, 1)
}

/// Whether someone (another open file) announces at byte `at`.
pub(crate) fn presence(fd: impl AsFd, at: u64) -> Presence {
    match os::is_locked(fd, at, 1) {
        Ok(true) => Presence::Alive,
        Ok(false) => Presence::Gone,
        Err(_) => Presence::Unknown,
    }
}

/// Takes byte `at` over if its announcer is gone: true means it was gone
/// and `fd` now holds the byte, so no one else can take it meanwhile.
pub(crate) fn take_over(fd: impl AsFd, at: u64) -> bool {
    claim(fd, at).unwrap_or(false)
}
