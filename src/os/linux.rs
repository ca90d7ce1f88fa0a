//! Linux system calls behind shmkit, as thin safe wrappers over `rustix`.
//!
//! Why not the `shared_memory` crate the design card names: its `Shmem` is
//! `!Send`, it cannot reserve pages (so a full `/dev/shm` surfaces later as
//! SIGBUS), it only unlinks from the creating handle's `Drop`, and it is
//! unmaintained. `shm_open(3)` plus `memmap2` give the same mapping with
//! those holes closed.

use std::fs;
use std::io;

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FallocateFlags, Mode};
pub(crate) use rustix::io::Errno;
use rustix::shm;

/// Longest name a `/dev/shm` entry may have (`NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;

/// Creates a new segment, failing if `name` exists: `shm_open(3)` with
/// `O_CREAT | O_EXCL | O_RDWR` and mode 0600, so no other user can open it.
pub(crate) fn shm_create(name: &str) -> io::Result<OwnedFd> {
    let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
    Ok(shm::open(name, flags, Mode::RUSR | Mode::WUSR)?)
}

/// Opens an existing segment read-write: `shm_open(3)` with `O_RDWR`.
pub(crate) fn shm_open(name: &str) -> io::Result<OwnedFd> {
    Ok(shm::open(name, shm::OFlags::RDWR, Mode::empty())?)
}

/// Removes a segment's name; mappings stay valid: `shm_unlink(3)`.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(shm::unlink(name)?)
}

/// Sets the length and allocates every page now: `posix_fallocate(3)`
/// semantics through `fallocate(2)` mode 0. On tmpfs this is what turns a
/// full `/dev/shm` into `ENOSPC` here instead of SIGBUS at first touch.
pub(crate) fn reserve(fd: impl AsFd, len: u64) -> Result<(), Errno> {
    rustix::fs::fallocate(fd, FallocateFlags::empty(), 0, len)
}

/// Sets the length without allocating pages: `ftruncate(2)`.
pub(crate) fn set_len(fd: impl AsFd, len: u64) -> Result<(), Errno> {
    rustix::fs::ftruncate(fd, len)
}

/// The current length of the object behind `fd`: `fstat(2)`.
pub(crate) fn len_of(fd: impl AsFd) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// The inode number of the object behind `fd`: `fstat(2)`.
pub(crate) fn inode_of(fd: impl AsFd) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_ino)
}

/// How many names the object behind `fd` has left: `fstat(2)`.
pub(crate) fn link_count(fd: impl AsFd) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_nlink)
}

/// Bytes free to unprivileged users on the filesystem of `fd`: `fstatvfs(3)`.
pub(crate) fn free_bytes(fd: impl AsFd) -> u64 {
    rustix::fs::fstatvfs(fd).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// This process's id.
pub(crate) fn current_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Sends SIGKILL to `pid` (`kill(2)`); errors (it is already gone) are
/// ignored, since the caller only wants it dead.
pub(crate) fn kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Ends this process at once with `code`, running no atexit handlers and
/// flushing nothing: `_exit(2)`. For a helper whose coordinator is gone,
/// while another thread may hold locks that `exit(3)` would need.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// When `pid` started, in clock ticks after boot (`/proc/PID/stat` field 22,
/// see `proc_pid_stat(5)`); `None` if there is no such process.
///
/// With the pid it names a process uniquely: a recycled pid has a later start.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; the
    // fields after its closing parenthesis are plain numbers.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = current_pid();
        let t = process_start_time(me).expect("own /proc entry");
        assert_eq!(process_start_time(me), Some(t));
        assert_eq!(process_start_time(u32::MAX), None);
    }
}
