//! Whether this process is a pool's helper, taking up its socket, and the
//! guard that stops a helper whose `main` forgot `shmkit::init` before it
//! does anything with shared memory.
//!
//! A pool starts each helper with one end of a socket pair left open
//! across `exec` and two variables: the descriptor's number and the pid of
//! the process that made the pair. A process is a helper exactly when that
//! descriptor is open and is a socket whose peer credentials (`SO_PEERCRED`,
//! which for a socket pair name the process that made it) are that pid.
//!
//! The variables alone prove nothing: every process a helper's tasks start
//! inherits them. The descriptor does not reach those: a helper marks it
//! close-on-exec as it takes it up. So a task that runs this same program
//! gets an ordinary process, which runs its `main` (and may build pools of
//! its own), while a launcher between pool and helper (`timeout`, `strace`,
//! a shell script) passes the descriptor on and the helper behind it
//! serves. Nothing here depends on which process is whose parent.
//!
//! A helper in a PID namespace of its own (a launcher such as
//! `unshare --pid`, bwrap or firejail between pool and helper) cannot see
//! the pool's pid: the kernel reports its peer as pid 0. Such a socket
//! counts only if it is a connected stream socket with a real peer and
//! this process is in another PID namespace than the pool (a third
//! variable names the pool's): a socket with no peer at all (unbound, or
//! datagram) also reads as pid 0, and must not make a process a helper.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Tells a process it may be a helper: the descriptor of its socket.
pub(crate) const SOCKET_VAR: &str = "SHMKIT_HELPER_FD";
/// The pid of the process that made the socket pair (the coordinator): a
/// descriptor of that number whose peer is not that process is not ours.
pub(crate) const PARENT_VAR: &str = "SHMKIT_HELPER_PARENT";
/// The inode of the pool's PID namespace: a helper that cannot see its
/// pool's pid (peer pid 0) counts only if it is in another namespace.
pub(crate) const PIDNS_VAR: &str = "SHMKIT_HELPER_PIDNS";
/// In a helper of a pool built inside a `#[test]`: the test that built it,
/// the only one whose thread may serve.
pub(crate) const TEST_VAR: &str = "SHMKIT_HELPER_TEST";
/// `NAME:INDEX`: the pool's status segment and this helper's word in it.
pub(crate) const STATUS_VAR: &str = "SHMKIT_HELPER_STATUS";

/// The frame a helper sends when its `main` used shmkit before calling
/// `init`: `FromHelper::NotInitialized` (a test in `pool::wire` checks).
pub(crate) const NOT_INITIALIZED_FRAME: [u8; 5] = [1, 0, 0, 0, 3];

/// Set once this process serves as a helper (inside `init`).
static SERVING: AtomicBool = AtomicBool::new(false);

/// Marks this process as serving (called by `init` before anything else).
pub(crate) fn set_serving() {
    SERVING.store(true, Ordering::SeqCst);
}

/// True once this process serves as a helper.
pub(crate) fn is_serving() -> bool {
    SERVING.load(Ordering::SeqCst)
}

/// Stops a process a pool started as a helper whose `main` did not call
/// `shmkit::init` first, at its first use of shmkit (`what`: making a
/// segment, opening one, building a pool): without it, `main` would run
/// on in every helper, taking work off shared queues, starting pools of
/// its own. It tells its coordinator (whose `build` fails with
/// `PoolError::NotInitialized`) and exits at once. Processes that
/// helpers' tasks start are not helpers (see above): they are unaffected.
/// Costs one load once the answer is known.
pub(crate) fn guard(what: impl FnOnce() -> String) {
    static STRANDED: OnceLock<Option<RawFd>> = OnceLock::new();
    if is_serving() {
        return;
    }
    let Some(fd) = *STRANDED.get_or_init(helper_socket) else { return };
    if is_serving() {
        return; // init ran on another thread meanwhile
    }
    eprintln!(
        "shmkit helper {}: main {} before calling shmkit::init(tasks): make `shmkit::init(tasks);` the \
         first line of main (or build the pool with a helper binary); exiting",
        std::process::id(),
        what()
    );
    if let Some(mut stream) = adopt(fd) {
        let _ = stream.write_all(&NOT_INITIALIZED_FRAME);
    }
    crate::os::exit_now(3)
}

/// The descriptor of this process's helper socket, if a pool started it
/// (checked as the module says; read-only, so callable any number of times).
pub(crate) fn helper_socket() -> Option<RawFd> {
    let fd: RawFd = std::env::var(SOCKET_VAR).ok()?.parse().ok().filter(|&fd| fd >= 0)?;
    let pool: u32 = std::env::var(PARENT_VAR).ok()?.parse().ok()?;
    let elsewhere = || {
        let theirs: Option<u64> = std::env::var(PIDNS_VAR).ok().and_then(|v| v.parse().ok());
        theirs.is_some_and(|ns| ns != 0 && ns != crate::os::pid_namespace())
    };
    match crate::os::peer_pid(fd)? {
        p if p == pool => Some(fd),
        0 if elsewhere() => Some(fd),
        _ => None,
    }
}

/// Set once the socket has an owner in this process.
static ADOPTED: AtomicBool = AtomicBool::new(false);

/// Takes ownership of the helper socket `fd` (from [`helper_socket`]) and
/// marks it close-on-exec, so no process started from here inherits it.
/// `None` if it was taken already: a descriptor has one owner.
pub(crate) fn adopt(fd: RawFd) -> Option<UnixStream> {
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: `fd` was just checked to be an open socket (its peer was
    // read). Nothing else in this process owns it: it was inherited across
    // `exec`, shmkit alone knows its number (from its own variable), and
    // the flag above lets this line run once per process.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC).ok()?;
    Some(UnixStream::from(owned))
}
