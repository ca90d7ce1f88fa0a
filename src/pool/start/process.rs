//! Starting a helper process with `posix_spawn(3)`, handing it one socket.
//!
//! `std::process::Command` can start a process with `posix_spawn` (glibc
//! runs it with `CLONE_VFORK`: no copy of the parent's page tables), but
//! only without a `pre_exec` hook, and a hook is the only way it offers to
//! leave one descriptor open across `exec`. With a hook it forks, which
//! costs about a millisecond per helper in a process with a large address
//! space. So helpers are started here: `posix_spawnp` with one file action,
//! `dup2(copy, fd)`, which gives the child `fd` without close-on-exec while
//! every descriptor of the parent (all close-on-exec) stays out. Signals
//! are reset as `Command` does (empty mask; SIGPIPE back to default, since
//! Rust programs ignore it).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use rustix::fd::{AsFd, OwnedFd};

/// A child process started by [`spawn`]: waited for by pid, which stays
/// ours (not reusable by another process) until it is reaped here.
#[derive(Debug)]
pub(crate) struct Process {
    pid: libc::pid_t,
    status: Option<ExitStatus>,
}

/// A process to signal: through its pidfd (`pidfd_open(2)`) when the
/// kernel has them, so a signal never reaches a process that reused its
/// pid; else by pid, which only our own unreaped child may be.
pub(crate) struct Target {
    pub pid: u32,
    pub pidfd: Option<OwnedFd>,
}

impl Target {
    /// A target for process `pid`, with a pidfd if the kernel gives one.
    pub fn new(pid: u32) -> Target {
        Target { pid, pidfd: pidfd_of(pid) }
    }

    pub fn kill(&self, by_pid_ok: bool) {
        match &self.pidfd {
            Some(fd) => {
                let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
            }
            None if by_pid_ok => crate::os::kill(self.pid),
            None => {}
        }
    }

    /// Waits up to `limit` for the process to end (its pidfd turns
    /// readable); false if it has not, or there is no pidfd to tell.
    pub fn wait_exit(&self, limit: Duration) -> bool {
        use rustix::event::{poll, PollFd, PollFlags};
        let Some(fd) = &self.pidfd else { return false };
        let fd = fd.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        loop {
            match poll(&mut fds, crate::os::timespec(Some(limit)).as_ref()) {
                Ok(n) => return n > 0,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// A pidfd for process `pid` (Linux 5.3+); `None` on older kernels.
fn pidfd_of(pid: u32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// What to start.
pub(crate) struct Spawn<'a> {
    pub program: &'a Path,
    pub args: &'a [OsString],
    /// Set in the child's environment (over this process's).
    pub env: Vec<(OsString, OsString)>,
    /// Open in the child under the same number.
    pub keep: BorrowedFd<'a>,
    /// Where its standard output goes (standard input is `/dev/null`).
    pub stdout: Out<'a>,
    /// Where its standard error goes.
    pub stderr: Out<'a>,
}

/// Where a child's standard output or error goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Out<'a> {
    /// This process's own.
    Inherit,
    /// `/dev/null`.
    Null,
    /// This descriptor (a relay pipe).
    To(BorrowedFd<'a>),
}

/// Starts `what`: `posix_spawnp(3)`, so a program without a slash is looked
/// up in `PATH`. Errors (program not found, not executable) come back
/// from the call itself.
pub(crate) fn spawn(what: &Spawn<'_>) -> io::Result<Process> {
    let program = cstring(what.program.as_os_str())?;
    let mut argv: Vec<CString> = vec![program.clone()];
    for a in what.args {
        argv.push(cstring(a)?);
    }
    let mut env: Vec<(OsString, OsString)> =
        std::env::vars_os().filter(|(k, _)| !what.env.iter().any(|(o, _)| o == k)).collect();
    env.extend(what.env.iter().cloned());
    let pair = |(k, v): &(OsString, OsString)| {
        let mut kv = k.clone();
        kv.push("=");
        kv.push(v);
        cstring(&kv)
    };
    let envp: Vec<CString> = env.iter().map(pair).collect::<io::Result<_>>()?;
    let argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).chain([std::ptr::null()]).collect();
    // A close-on-exec copy to dup2 from: dup2 onto the number itself would
    // change nothing, and the copy is closed at exec like every other.
    let copy = rustix::io::fcntl_dupfd_cloexec(what.keep, 0)?;
    let actions = FileActions::new(what.keep.as_raw_fd(), copy.as_raw_fd(), [what.stdout, what.stderr])?;
    let attrs = Attributes::new()?;
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: `program` and the
    // null-terminated `argv_ptrs` and `envp_ptrs` point into CStrings alive
    // until after it; `actions` and `attrs` were initialised by their
    // constructors and live until after it; `pid` is a local.
    let code = unsafe {
        libc::posix_spawnp(
            &mut pid,
            program.as_ptr(),
            actions.as_ptr(),
            attrs.as_ptr(),
            argv_ptrs.as_ptr().cast(),
            envp_ptrs.as_ptr().cast(),
        )
    };
    match code {
        0 => Ok(Process { pid, status: None }),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?} contains a NUL byte")))
}

impl Process {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// SIGKILLs it, unless already reaped (its pid may be another's then).
    pub fn kill(&self) {
        if self.status.is_none() {
            crate::os::kill(self.id());
        }
    }

    /// Waits for it to end and reaps it (`waitpid(2)`).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.reap(0).map(|s| s.expect("a blocking wait returns a status"))
    }

    /// Reaps it if it has ended, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.reap(libc::WNOHANG)
    }

    /// True if it has exited, leaving it unreaped (`waitid(2)` with
    /// `WNOWAIT`): its pid stays its own until it is reaped.
    pub fn has_exited(&self) -> bool {
        use rustix::process::{waitid, Pid, WaitId, WaitIdOptions};
        let Some(pid) = Pid::from_raw(self.pid) else { return true };
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        self.status.is_some() || !matches!(waitid(WaitId::Pid(pid), options), Ok(None))
    }

    fn reap(&mut self, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let mut raw = 0;
        loop {
            // SAFETY: `raw` is a valid int to write the status to; `pid` is
            // our own unreaped child.
            match unsafe { libc::waitpid(self.pid, &mut raw, flags) } {
                0 => return Ok(None),
                -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
                -1 => return Err(io::Error::last_os_error()),
                _ => {
                    self.status = Some(ExitStatus::from_raw(raw));
                    return Ok(self.status);
                }
            }
        }
    }
}

/// `posix_spawn_file_actions_t`, destroyed on drop.
struct FileActions(Box<MaybeUninit<libc::posix_spawn_file_actions_t>>);

impl FileActions {
    /// Actions: `dup2(copy, keep)`, standard input from `/dev/null`, and
    /// standard output and error as `outs` says.
    fn new(keep: libc::c_int, copy: libc::c_int, outs: [Out<'_>; 2]) -> io::Result<FileActions> {
        let mut storage = Box::new(MaybeUninit::uninit());
        // SAFETY: the pointer is to boxed, writable storage of the right
        // type, which init initialises; only once it has does the storage
        // become a `FileActions`, whose Drop destroys it.
        check(unsafe { libc::posix_spawn_file_actions_init(storage.as_mut_ptr()) })?;
        let mut fa = FileActions(storage);
        let null = c"/dev/null";
        let ptr = fa.0.as_mut_ptr();
        // SAFETY: `ptr` is initialised above; `null` is a valid C string
        // that glibc copies; the descriptors are open (borrowed) now, and
        // the actions only name their numbers.
        let added = unsafe {
            let out = |(target, out): (libc::c_int, Out<'_>)| match out {
                Out::Inherit => Ok(()),
                Out::Null => {
                    check(libc::posix_spawn_file_actions_addopen(ptr, target, null.as_ptr(), libc::O_WRONLY, 0))
                }
                Out::To(fd) => check(libc::posix_spawn_file_actions_adddup2(ptr, fd.as_raw_fd(), target)),
            };
            check(libc::posix_spawn_file_actions_adddup2(ptr, copy, keep))
                .and_then(|_| check(libc::posix_spawn_file_actions_addopen(ptr, 0, null.as_ptr(), libc::O_RDONLY, 0)))
                .and_then(|_| [1, 2].into_iter().zip(outs).try_for_each(out))
        };
        added.map(|_| fa)
    }

    fn as_ptr(&self) -> *const libc::posix_spawn_file_actions_t {
        self.0.as_ptr()
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: only values whose init succeeded exist.
        unsafe { libc::posix_spawn_file_actions_destroy(self.0.as_mut_ptr()) };
    }
}

/// `posix_spawnattr_t`: empty signal mask, SIGPIPE to its default.
struct Attributes(Box<MaybeUninit<libc::posix_spawnattr_t>>);

impl Attributes {
    fn new() -> io::Result<Attributes> {
        let mut storage = Box::new(MaybeUninit::uninit());
        // SAFETY: boxed storage of the right type for init to initialise;
        // only once it has does it become an `Attributes` (Drop destroys).
        check(unsafe { libc::posix_spawnattr_init(storage.as_mut_ptr()) })?;
        let mut a = Attributes(storage);
        let ptr = a.0.as_mut_ptr();
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `ptr` was initialised above; `set` is initialised by
        // sigemptyset before sigaddset and the setters read it.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            check(libc::posix_spawnattr_setsigmask(ptr, set.as_ptr()))?;
            libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigdefault(ptr, set.as_ptr()))?;
            let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(ptr, flags as libc::c_short))?;
        }
        Ok(a)
    }

    fn as_ptr(&self) -> *const libc::posix_spawnattr_t {
        self.0.as_ptr()
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: only values whose init succeeded exist.
        unsafe { libc::posix_spawnattr_destroy(self.0.as_mut_ptr()) };
    }
}

fn check(code: libc::c_int) -> io::Result<()> {
    match code {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    #[test]
    fn the_kept_socket_alone_reaches_the_child_and_errors_come_back() {
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let other = std::fs::File::open("/proc/self/stat").unwrap(); // close-on-exec, as Rust opens all
        let fd = theirs.as_raw_fd();
        let script =
            format!("echo hi >&{fd}; test -e /proc/self/fd/{} && echo leaked >&{fd}; exit 7", other.as_raw_fd());
        let args = [OsString::from("-c"), OsString::from(script)];
        let (stdout, stderr) = (Out::Null, Out::Inherit);
        let what =
            Spawn { program: Path::new("sh"), args: &args, env: Vec::new(), keep: theirs.as_fd(), stdout, stderr };
        let mut child = spawn(&what).unwrap();
        let missing = Spawn { program: Path::new("/no/such/program"), ..what };
        assert_eq!(spawn(&missing).unwrap_err().kind(), io::ErrorKind::NotFound);
        drop(theirs);
        let mut said = String::new();
        ours.read_to_string(&mut said).unwrap();
        assert_eq!(said, "hi\n", "the socket was passed, nothing else");
        assert_eq!(child.wait().unwrap().code(), Some(7));
        child.kill(); // reaped: a no-op, not a signal to a reused pid
    }
}
