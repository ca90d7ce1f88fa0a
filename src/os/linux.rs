//! Linux system calls behind shmkit, as thin safe wrappers over `rustix`
//! (and `libc` where rustix has no wrapper), each citing its man page.
//!
//! Why not the `shared_memory` crate: its `Shmem` is
//! `!Send`, it cannot reserve pages (so a full `/dev/shm` surfaces later as
//! SIGBUS), it only unlinks from the creating handle's `Drop`, and it is
//! unmaintained. Opening entries of `/dev/shm` directly (what `shm_open(3)`
//! does in glibc) plus `memmap2` gives the same mapping with those holes
//! closed, and lets shmkit build a segment unnamed (`O_TMPFILE`) and name
//! it only once it is complete.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

use std::sync::OnceLock;

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FallocateFlags, FileType, Mode, OFlags, RenameFlags, CWD};
pub(crate) use rustix::io::Errno;

/// Where POSIX shared memory lives on Linux (glibc's `shm_open` uses it too).
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// Longest name a `/dev/shm` entry may have (`NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;
/// Longest name shmkit gives a segment: room is left for the aside name
/// its removal takes (see [`remove_if`]).
pub(crate) const CREATE_MAX: usize = NAME_MAX - ASIDE_EXTRA;

/// Which file an fd or a name leads to: device and inode. Inode numbers
/// alone repeat across mounts (every tmpfs numbers its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// What `fstat(2)` says of an open segment or file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileStat {
    pub id: FileId,
    pub len: u64,
    pub links: u64,
    pub regular: bool,
    pub uid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// `fstat(2)`.
pub(crate) fn stat(fd: impl AsFd) -> io::Result<FileStat> {
    let s = rustix::fs::fstat(fd)?;
    Ok(FileStat {
        id: FileId { dev: s.st_dev, ino: s.st_ino },
        len: s.st_size as u64,
        links: s.st_nlink,
        regular: FileType::from_raw_mode(s.st_mode) == FileType::RegularFile,
        uid: s.st_uid,
        mode: s.st_mode & 0o7777,
    })
}

/// This process's effective user id: `geteuid(2)`.
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The directory `dir`, opened to create and name entries in it.
pub(crate) fn open_dir(dir: impl rustix::path::Arg) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// `/dev/shm`, opened once per process and kept: every segment call works
/// relative to it, and an owner's drop can remove its name even when the
/// process has run out of file descriptors.
pub(crate) fn shm_dir() -> io::Result<BorrowedFd<'static>> {
    static DIR: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.as_fd());
    }
    let opened = open_dir(SHM_DIR)?;
    Ok(DIR.get_or_init(|| opened).as_fd())
}

/// A new file in `dir` that has no name yet (`open(2)` with `O_TMPFILE`):
/// if this process dies before [`link`] names it, the kernel frees it, so
/// a crash while creating leaves nothing behind.
pub(crate) fn unnamed_file(dir: impl AsFd, mode: u32) -> io::Result<OwnedFd> {
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, ".", flags, Mode::from_raw_mode(mode))?)
}

/// Creates entry `name` of `dir`, failing if it exists (`O_EXCL`): for
/// filesystems without `O_TMPFILE`.
pub(crate) fn create_at(dir: impl AsFd, name: impl rustix::path::Arg, mode: u32) -> io::Result<OwnedFd> {
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode))?)
}

/// Gives the unnamed file `fd` the name `name` in `dir`, failing with
/// `EEXIST` if the name is taken: `linkat(2)`. Atomic, so other processes
/// see either no entry or the finished file.
///
/// `AT_EMPTY_PATH` needs `CAP_DAC_READ_SEARCH` on older kernels; the
/// `/proc/self/fd` form (see `open(2)`, `O_TMPFILE`) needs none.
pub(crate) fn link(fd: impl AsFd, dir: impl AsFd, name: impl rustix::path::Arg + Copy) -> io::Result<()> {
    match rustix::fs::linkat(&fd, "", &dir, name, AtFlags::EMPTY_PATH) {
        Err(Errno::NOENT | Errno::PERM | Errno::ACCESS) => {}
        other => return Ok(other?),
    }
    let proc_path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    Ok(rustix::fs::linkat(CWD, proc_path.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW)?)
}

/// A second open file of the file `fd` is open on (`/proc/self/fd/N`, see
/// `proc(5)`): the same file, a new open file description, so locks taken
/// through one are not the other's. Works for unnamed (`O_TMPFILE`) files.
pub(crate) fn reopen(fd: impl AsFd) -> io::Result<OwnedFd> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    Ok(rustix::fs::openat(CWD, proc_path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?)
}

/// Opens entry `name` of `dir` read-write, not following symlinks.
pub(crate) fn open_at(dir: impl AsFd, name: &str) -> io::Result<OwnedFd> {
    let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// Which file entry `name` of `dir` leads to now: `fstatat(2)`.
pub(crate) fn id_at(dir: impl AsFd, name: &str) -> io::Result<FileId> {
    let s = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(FileId { dev: s.st_dev, ino: s.st_ino })
}

/// What [`remove_if`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Removed {
    /// The name led to the file meant, and is gone.
    Yes,
    /// The name is gone already.
    Gone,
    /// The name leads to another file now; it was left alone.
    Other,
}

/// The prefix of the name a file has while [`remove_if`] removes it.
pub(crate) const ASIDE: &str = "shmkit-rm-";
/// Length of an aside name beyond the original name: prefix, 16 hex
/// digits of the inode, a dash, 8 hex digits of this removal's own, a dash.
pub(crate) const ASIDE_EXTRA: usize = ASIDE.len() + 17 + 9;

/// The name file `ino`, named `name`, has while it is being removed:
/// `shmkit-rm-<inode>-<nonce>-<name>`, so that if the remover dies before
/// it ends, `gc` can tell what it was doing and finish it
/// ([`finish_removal`]). The nonce makes the name this removal's alone:
/// no other remover can move another file under it, so what this one
/// checked there is what it unlinks.
pub(crate) fn aside_name(name: &str, ino: u64, nonce: u32) -> String {
    format!("{ASIDE}{ino:016x}-{nonce:08x}-{name}")
}

/// A number for [`aside_name`] that no other removal in this or another
/// process is likely to use at the same time (a clash only costs a retry).
fn nonce() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    (current_pid().wrapping_mul(0x9e37_79b1) ^ t).wrapping_add(n.wrapping_mul(0x85eb_ca6b))
}

/// The inode and original name an aside name records; `None` for any
/// other name.
pub(crate) fn parse_aside(aside: &str) -> Option<(u64, &str)> {
    let rest = aside.strip_prefix(ASIDE)?;
    let (ino, rest) = (rest.get(..16)?, rest.get(16..)?.strip_prefix('-')?);
    let (nonce, name) = (rest.get(..8)?, rest.get(8..)?.strip_prefix('-')?);
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let ino = u64::from_str_radix(ino, 16).ok().filter(|_| hex(nonce))?;
    (!name.is_empty() && ino != 0).then_some((ino, name))
}

/// Removes entry `name` of `dir` only if it still leads to file `id`.
///
/// POSIX has no "unlink this inode": between a check and `unlink(2)` a
/// namesake could take the name. So the entry is first moved aside to a
/// name that records the inode meant and the name, with `renameat2(2)`
/// `RENAME_NOREPLACE` (atomic); the moved file is checked, and only a
/// match is unlinked; anything else is moved back. A file other than `id`
/// is never unlinked. A remover killed half-way leaves the aside name,
/// which [`finish_removal`] (run by `gc`) completes: unlinks it if it is
/// the file meant, gives it its name back if it is a namesake.
pub(crate) fn remove_if(dir: impl AsFd, name: &str, id: FileId) -> io::Result<Removed> {
    crate::fault::point("remove-start");
    match id_at(&dir, name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removed::Gone),
        Ok(now) if now != id => return Ok(Removed::Other),
        other => drop(other?),
    }
    if name.len() + ASIDE_EXTRA > NAME_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a name too long to remove safely"));
    }
    // A taken aside name (a clash of nonces, or someone else's file made
    // on purpose) costs a retry with another nonce, never a loop.
    let mut tries = 0;
    let aside = loop {
        let aside = aside_name(name, id.ino, nonce());
        match rustix::fs::renameat_with(&dir, name, &dir, aside.as_str(), RenameFlags::NOREPLACE) {
            Err(Errno::NOENT) => return Ok(Removed::Gone),
            Err(Errno::EXIST) if tries < 8 => tries += 1,
            other => break other.map(|()| aside)?,
        }
    };
    crate::fault::point("remove-after-aside");
    match id_at(&dir, &aside) {
        Ok(moved) if moved == id => {
            match rustix::fs::unlinkat(&dir, aside.as_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => return Ok(Removed::Yes), // NOENT: a gc finished it
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removed::Yes), // finished by gc
        _ => {}
    }
    // A namesake was published in the instant between the check and the
    // rename: hand its name back.
    crate::fault::point("remove-before-move-back");
    restore(&dir, &aside, name)?;
    Ok(Removed::Other)
}

/// What [`finish_removal`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Finished {
    /// The file meant was removed.
    Removed,
    /// A namesake got its name back.
    Restored,
    /// Nothing to do (the entry is gone), or the namesake's name is taken
    /// by a third file: it stays aside, an ordinary segment to `gc`.
    Left,
}

/// Completes the removal an aside entry of `dir` records (see
/// [`remove_if`]): removes the file if it is the one meant, else gives it
/// its name back. Every step is safe to repeat, by any process.
pub(crate) fn finish_removal(dir: impl AsFd, aside: &str) -> io::Result<Finished> {
    let Some((ino, name)) = parse_aside(aside) else { return Ok(Finished::Left) };
    let now = match id_at(&dir, aside) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Finished::Left),
        other => other?,
    };
    if now.ino == ino {
        return match rustix::fs::unlinkat(&dir, aside, AtFlags::empty()) {
            Ok(()) => Ok(Finished::Removed),
            Err(Errno::NOENT) => Ok(Finished::Left),
            Err(e) => Err(e.into()),
        };
    }
    restore(&dir, aside, name)
}

/// Gives the file at `aside` its name `name` back, unless another file has
/// taken it meanwhile.
fn restore(dir: impl AsFd, aside: &str, name: &str) -> io::Result<Finished> {
    match rustix::fs::renameat_with(&dir, aside, &dir, name, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(Finished::Restored),
        Err(Errno::NOENT | Errno::EXIST) => Ok(Finished::Left),
        Err(e) => Err(e.into()),
    }
}

/// Removes entry `name` of `dir` whatever it leads to: `unlinkat(2)`.
pub(crate) fn unlink_at(dir: impl AsFd, name: impl rustix::path::Arg) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Allocates the pages of bytes `offset..offset + len` now (`fallocate(2)`
/// mode 0; the length grows to cover them if needed). On tmpfs this is
/// what turns a full `/dev/shm` into `ENOSPC` here instead of SIGBUS at
/// first touch.
pub(crate) fn reserve_range(fd: impl AsFd, offset: u64, len: u64) -> Result<(), Errno> {
    rustix::fs::fallocate(fd, FallocateFlags::empty(), offset, len)
}

/// Gives back the pages of `offset..offset + len`, keeping the length:
/// `fallocate(2)` with `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`.
pub(crate) fn release_range(fd: impl AsFd, offset: u64, len: u64) -> Result<(), Errno> {
    rustix::fs::fallocate(fd, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len)
}

/// Sets the length without allocating pages: `ftruncate(2)`.
pub(crate) fn set_len(fd: impl AsFd, len: u64) -> Result<(), Errno> {
    rustix::fs::ftruncate(fd, len)
}

/// Bytes free to unprivileged users on the filesystem of `fd`, and its
/// size: `fstatvfs(3)`.
pub(crate) fn space(fd: impl AsFd) -> (u64, u64) {
    rustix::fs::fstatvfs(fd)
        .map_or((0, 0), |s| (s.f_bavail.saturating_mul(s.f_frsize), s.f_blocks.saturating_mul(s.f_frsize)))
}

/// This process's use of the limits segments meet, and the limits.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Limits {
    /// Files open now (`/proc/self/fd`).
    pub open_files: u64,
    /// `RLIMIT_NOFILE`, the soft limit (`getrlimit(2)`).
    pub max_open_files: u64,
    /// Its hard limit, which an unprivileged process may raise the soft one to.
    pub hard_open_files: u64,
    /// Memory mappings now (`/proc/self/maps` lines).
    pub mappings: u64,
    /// `vm.max_map_count` (`proc_sys_vm(5)`); 65530 if unreadable.
    pub max_mappings: u64,
}

/// Reads [`Limits`] now.
pub(crate) fn limits() -> Limits {
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let count = |dir: &str| fs::read_dir(dir).map_or(0, |d| d.count() as u64);
    let maps = fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count() as u64);
    let max_maps = fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse().ok());
    Limits {
        open_files: count("/proc/self/fd"),
        max_open_files: nofile.current.unwrap_or(u64::MAX),
        hard_open_files: nofile.maximum.unwrap_or(u64::MAX),
        mappings: maps,
        max_mappings: max_maps.unwrap_or(65530),
    }
}

/// Reads exactly `buf.len()` bytes at `offset`: `pread(2)`, repeated.
/// Reading through the fd, not a mapping, cannot fault with SIGBUS if
/// another process truncated the file.
pub(crate) fn read_at(fd: impl AsFd, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pread(&fd, &mut *buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A kind of advisory lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    /// Many holders at once (`F_RDLCK`).
    Shared,
    /// One holder (`F_WRLCK`).
    Exclusive,
}

/// One open file description's lock on bytes `start..start + len` of a file.
///
/// Open-file-description locks (`fcntl(2)`, `F_OFD_SETLK`): unlike POSIX
/// record locks they belong to the open file, not the process, so two
/// handles in one process conflict as two processes do, and closing one
/// fd does not drop another's locks. The kernel drops them when the open
/// file is released: its last fd closed and its last mapping (which holds
/// a reference to it) unmapped, both of which happen when the process dies
/// by any means. That is what makes them a liveness signal that neither
/// pid reuse, zombies nor PID namespaces can fool.
fn lock_op(fd: impl AsFd, cmd: libc::c_int, ty: libc::c_short, start: u64, len: u64) -> io::Result<libc::flock> {
    let to_off = |v: u64| libc::off_t::try_from(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    // SAFETY: flock is plain data; all-zero is a valid value (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = to_off(start)?;
    fl.l_len = to_off(len)?;
    loop {
        // SAFETY: the fd is valid for this call (borrowed); `fl` is a valid,
        // initialised flock that the kernel may write back into (GETLK).
        let r = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), cmd, &mut fl) };
        match r {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            -1 => return Err(io::Error::last_os_error()),
            _ => return Ok(fl),
        }
    }
}

/// Takes a lock on `start..start + len` without waiting; `Ok(false)` if
/// another open file holds a conflicting one. `len` must not be 0 (0
/// would mean "to the end of the file and beyond").
pub(crate) fn try_lock(fd: impl AsFd, kind: LockKind, start: u64, len: u64) -> io::Result<bool> {
    debug_assert!(len > 0, "a zero-length lock covers the whole file");
    let ty = match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    };
    match lock_op(fd, libc::F_OFD_SETLK, ty as libc::c_short, start, len) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Drops this open file's locks on `start..start + len`.
pub(crate) fn unlock(fd: impl AsFd, start: u64, len: u64) -> io::Result<()> {
    lock_op(fd, libc::F_OFD_SETLK, libc::F_UNLCK as libc::c_short, start, len).map(drop)
}

/// True if another open file holds any lock on `start..start + len`
/// (`F_OFD_GETLK`, which takes nothing).
pub(crate) fn is_locked(fd: impl AsFd, start: u64, len: u64) -> io::Result<bool> {
    let fl = lock_op(fd, libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short, start, len)?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// 64 random bits from the kernel: `getrandom(2)` (an MPI job's id).
#[cfg(feature = "mpi")]
pub(crate) fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())?;
    Ok(u64::from_le_bytes(b))
}

/// This process's id.
///
/// Cached (every handle call checks it, and `getpid(2)` is a system
/// call); a fork handler clears the cache in the child, which then reads
/// its own.
pub(crate) fn current_pid() -> u32 {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    static PID: AtomicU32 = AtomicU32::new(0);
    static HANDLER: AtomicBool = AtomicBool::new(false);
    extern "C" fn forget() {
        PID.store(0, Ordering::Relaxed);
        FORKS.fetch_add(1, Ordering::Relaxed);
    }
    match PID.load(Ordering::Relaxed) {
        0 => {
            if !HANDLER.swap(true, Ordering::AcqRel) {
                // SAFETY: `forget` only stores to an atomic (async-signal-
                // safe). Registered before any pid is cached, so no fork
                // can copy a cache without its handler.
                unsafe { libc::pthread_atfork(None, None, Some(forget)) };
            }
            let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// Sends SIGKILL to `pid` (`kill(2)`); errors (it is already gone) are
/// ignored, since the caller only wants it dead. Only for children this
/// process started and has not reaped, so the pid cannot be another's.
pub(crate) fn kill(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
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

/// When this process started, in clock ticks after boot (`/proc/self/stat`
/// field 22, see `proc_pid_stat(5)`); 0 if `/proc` cannot tell. Recorded
/// in segments for people reading `shmkit ls`; liveness never rests on it.
pub(crate) fn own_start_time() -> u64 {
    static CACHE: PerProcess = PerProcess::new();
    CACHE.get(read_start_time)
}

/// Forks this process has seen in its line (`current_pid`'s fork handler
/// counts them in each child): a process's values are kept under the count
/// they were read at, which no pid can stand for (a child may get its
/// parent's pid back, in a new PID namespace or by reuse).
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A value read once per process (from `/proc`: tens of microseconds on
/// every segment's creation otherwise), kept with the fork count it was
/// read at (plus one: 0 is empty), so a forked child reads its own.
/// Atomics, not a lock: a fork while another thread held a lock would
/// leave it held in the child for good.
struct PerProcess {
    at: std::sync::atomic::AtomicU64,
    value: std::sync::atomic::AtomicU64,
}

impl PerProcess {
    const fn new() -> PerProcess {
        PerProcess { at: std::sync::atomic::AtomicU64::new(0), value: std::sync::atomic::AtomicU64::new(0) }
    }

    /// `read()`'s value for this process; 0 (unknown) is never kept, so a
    /// `/proc` that failed once is asked again.
    fn get(&self, read: fn() -> u64) -> u64 {
        use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
        current_pid(); // registers the fork handler before anything is kept
        let at = FORKS.load(Relaxed) + 1;
        if self.at.load(Acquire) == at {
            return self.value.load(Relaxed); // stored before `at` was
        }
        // Threads that race here read the same value for the same process.
        let v = read();
        if v != 0 {
            self.value.store(v, Relaxed);
            self.at.store(at, Release);
        }
        v
    }
}

fn read_start_time() -> u64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else { return 0 };
    // The command name (field 2) may hold spaces and parentheses; the
    // fields after its closing parenthesis are plain numbers.
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    rest.split_whitespace().nth(19).and_then(|t| t.parse().ok()).unwrap_or(0)
}

/// The pid of the process at the other end of Unix socket `fd`, as
/// `SO_PEERCRED` records it (for a `socketpair(2)`, the process that made
/// the pair), 0 if that process has no pid in this PID namespace; `None`
/// if `fd` is not an open Unix socket. Takes a raw number, not a borrowed
/// descriptor: it is for checking a number read from the environment,
/// which may name nothing (see `unix(7)`, `socket(7)`).
pub(crate) fn peer_pid(fd: std::os::fd::RawFd) -> Option<u32> {
    let int = |opt| {
        let (mut v, mut len): (libc::c_int, _) = (0, size_of::<libc::c_int>() as libc::socklen_t);
        // SAFETY: as below, for an int.
        let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&raw mut v).cast(), &mut len) };
        (r == 0).then_some(v)
    };
    // Another kind of socket, or one with no peer, reports pid 0 too.
    let unix_stream = int(libc::SO_DOMAIN) == Some(libc::AF_UNIX) && int(libc::SO_TYPE) == Some(libc::SOCK_STREAM);
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a local of
    // exactly that size; any descriptor number is acceptable (a closed or
    // non-socket one fails with EBADF or ENOTSOCK, changing nothing).
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &mut len) };
    let ok = r == 0 && len as usize == size_of::<libc::ucred>() && cred.pid >= 0;
    // pid 0 is believed only of a Unix stream socket with a real peer (no
    // peer reads uid -1); a nonzero pid is the kernel's record either way.
    match (ok, cred.pid) {
        (true, 0) if unix_stream && cred.uid != u32::MAX => Some(0),
        (true, p) if p > 0 => Some(p as u32),
        _ => None,
    }
}

/// The inode of this process's PID namespace (`/proc/self/ns/pid`, see
/// `pid_namespaces(7)`); 0 if unknown. A pid means something only in the
/// namespace it was recorded in.
pub(crate) fn pid_namespace() -> u64 {
    // A process never changes its own PID namespace (`unshare` and `setns`
    // move only its children), but a child forked after them is in another.
    static CACHE: PerProcess = PerProcess::new();
    CACHE.get(|| fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino()))
}

/// A `poll(2)` or `futex(2)` timeout: `None` for no limit; a limit past
/// what a `timespec` holds saturates instead of failing.
pub fn timespec(limit: Option<std::time::Duration>) -> Option<rustix::event::Timespec> {
    use rustix::event::Timespec;
    limit.map(|l| Timespec::try_from(l).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_and_namespace_are_readable() {
        assert!(own_start_time() > 0);
        assert!(pid_namespace() > 0);
    }

    #[test]
    fn a_socket_pairs_peer_is_the_process_that_made_it() {
        use std::os::fd::AsRawFd;
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(peer_pid(a.as_raw_fd()), Some(current_pid()));
        assert_eq!(peer_pid(b.as_raw_fd()), Some(current_pid()));
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(peer_pid(file.as_raw_fd()), None, "not a socket");
        // Sockets with no peer read pid 0 from the kernel: never a peer.
        let lone = std::os::unix::net::UnixDatagram::unbound().unwrap();
        assert_eq!(peer_pid(lone.as_raw_fd()), None, "an unbound datagram socket");
        let (d, _e) = std::os::unix::net::UnixDatagram::pair().unwrap();
        assert_eq!(peer_pid(d.as_raw_fd()), Some(current_pid()), "a real peer, whatever the socket type");
        assert_eq!(peer_pid(-1), None);
    }

    #[test]
    fn ofd_locks_conflict_between_open_files_and_die_with_them() {
        let dir = open_dir(SHM_DIR).unwrap();
        let a = unnamed_file(&dir, 0o600).unwrap();
        let name = format!("shmkit-oslock-{}", current_pid());
        link(&a, &dir, &name).unwrap();
        let b = open_at(&dir, &name).unwrap();
        assert!(try_lock(&a, LockKind::Exclusive, 1 << 40, 1).unwrap());
        assert!(is_locked(&b, 1 << 40, 1).unwrap(), "another open file sees the lock");
        assert!(!is_locked(&a, 1 << 40, 1).unwrap(), "an open file never conflicts with itself");
        assert!(!try_lock(&b, LockKind::Shared, 1 << 40, 1).unwrap());
        drop(a);
        assert!(try_lock(&b, LockKind::Exclusive, 1 << 40, 1).unwrap(), "closing the fd dropped the lock");
        assert_eq!(remove_if(&dir, &name, stat(&b).unwrap().id).unwrap(), Removed::Yes);
    }

    #[test]
    fn remove_if_leaves_a_namesake_alone() {
        let dir = open_dir(SHM_DIR).unwrap();
        let name = format!("shmkit-osremove-{}", current_pid());
        let first = unnamed_file(&dir, 0o600).unwrap();
        link(&first, &dir, &name).unwrap();
        let first_id = stat(&first).unwrap().id;
        unlink_at(&dir, &name).unwrap();
        let second = unnamed_file(&dir, 0o600).unwrap();
        link(&second, &dir, &name).unwrap();
        assert_eq!(remove_if(&dir, &name, first_id).unwrap(), Removed::Other);
        assert_eq!(id_at(&dir, &name).unwrap(), stat(&second).unwrap().id);
        assert_eq!(remove_if(&dir, &name, stat(&second).unwrap().id).unwrap(), Removed::Yes);
        assert_eq!(remove_if(&dir, &name, first_id).unwrap(), Removed::Gone);
    }

    #[test]
    fn an_interrupted_removal_is_finished_either_way() {
        let dir = open_dir(SHM_DIR).unwrap();
        let name = format!("shmkit-osaside-{}", current_pid());
        // The file meant, left aside by a remover that died: removed.
        let meant = unnamed_file(&dir, 0o600).unwrap();
        let ino = stat(&meant).unwrap().id.ino;
        link(&meant, &dir, &aside_name(&name, ino, 0xabcd)).unwrap();
        assert_eq!(parse_aside(&aside_name(&name, ino, 0xabcd)), Some((ino, name.as_str())));
        assert_eq!(finish_removal(&dir, &aside_name(&name, ino, 0xabcd)).unwrap(), Finished::Removed);
        assert_eq!(stat(&meant).unwrap().links, 0);
        // A namesake moved aside in the race, its remover dead before the
        // move back: it gets its name back.
        let namesake = unnamed_file(&dir, 0o600).unwrap();
        link(&namesake, &dir, &aside_name(&name, ino, 0xabcd)).unwrap();
        assert_eq!(finish_removal(&dir, &aside_name(&name, ino, 0xabcd)).unwrap(), Finished::Restored);
        assert_eq!(id_at(&dir, &name).unwrap(), stat(&namesake).unwrap().id);
        assert_eq!(remove_if(&dir, &name, stat(&namesake).unwrap().id).unwrap(), Removed::Yes);
        assert_eq!(parse_aside("shmkit-rm-xyz"), None);
        assert_eq!(parse_aside(&format!("shmkit-rm-{ino:016x}-{name}")), None, "no nonce: not an aside name");
        assert_eq!(parse_aside(&name), None);
    }
}
