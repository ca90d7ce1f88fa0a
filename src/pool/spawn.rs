//! Starting a helper process and shaking hands with it.
//!
//! The helper is a new process running a program (by default this one),
//! started with `posix_spawn`/`fork`+`exec` by `std::process::Command`:
//! nothing of the coordinator's running state is forked, so pools are safe
//! in threaded and async programs. It connects back to a Unix socket in
//! the abstract namespace (no file to leak), bound for this one helper;
//! the peer's pid (`SO_PEERCRED`) must be the child's.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::builder::Config;
use super::error::{PoolError, TaskError};
use super::job::HelperCell;
use super::status::{self, Status};
use super::wire::{send, Fill, FrameReader, FromHelper, ToHelper};

/// Tells a process it is a helper, and where to connect.
pub(crate) const SOCKET_VAR: &str = "SHMKIT_HELPER_SOCKET";
/// The coordinator's pid, so a helper can tell it has been orphaned.
pub(crate) const PARENT_VAR: &str = "SHMKIT_HELPER_PARENT";
/// `NAME:INDEX`: the pool's status segment and this helper's word in it.
pub(crate) const STATUS_VAR: &str = "SHMKIT_HELPER_STATUS";

/// A running, handshaken helper.
pub(crate) struct Helper {
    pub child: Child,
    pub reader: FrameReader,
    pub stream: UnixStream,
    pub cell: Arc<HelperCell>,
}

/// Kills and reaps a child unless disarmed: no half-started helper is
/// left behind when start-up fails.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill(); // already gone is fine
            let _ = child.wait();
        }
    }
}

/// Starts helper `index` and waits until it is ready to run `names`.
pub(crate) fn start(cfg: &Config, names: &[String], status: &Arc<Status>, index: usize) -> Result<Helper, PoolError> {
    let deadline = Instant::now().checked_add(cfg.start_timeout); // None: wait as long as it takes
    let (listener, address) = listen()?;
    let word = status.word(index).expect("drivers are numbered within the status segment");
    status::reset(word);
    let mut cmd = Command::new(&cfg.program);
    cmd.args(&cfg.args).envs(cfg.env.iter().map(|(k, v)| (k, v)));
    cmd.env(SOCKET_VAR, &address).env(PARENT_VAR, std::process::id().to_string()).stdin(Stdio::null());
    cmd.env(STATUS_VAR, format!("{}:{index}", status.name()));
    if cfg.quiet {
        cmd.stdout(Stdio::null());
    }
    let child =
        cmd.spawn().map_err(|source| PoolError::Spawn { program: cfg.program.display().to_string(), source })?;
    let mut reaper = Reaper(Some(child));
    let stream = accept(&listener, reaper.0.as_mut().expect("child"), deadline, cfg.start_timeout)?;
    let mut reader = FrameReader::new();
    handshake(&mut reader, &stream, names, cfg, reaper.0.as_mut().expect("child"), deadline)?;
    let child = reaper.0.take().expect("child");
    let pidfd = pidfd_of(child.id());
    let cell = Arc::new(HelperCell { pid: child.id(), pidfd, status: status.clone(), index });
    Ok(Helper { child, reader, stream, cell })
}

/// Binds a fresh abstract-namespace socket: `@shmkit-PID-RANDOM`.
fn listen() -> io::Result<(UnixListener, String)> {
    let mut random = [0u8; 8];
    rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
    let name = format!("shmkit-{}-{:016x}", std::process::id(), u64::from_le_bytes(random));
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
    listener.set_nonblocking(true)?;
    Ok((listener, name))
}

/// Accepts the child's connection, watching that it is still alive.
fn accept(
    listener: &UnixListener,
    child: &mut Child,
    deadline: Option<Instant>,
    limit: Duration,
) -> Result<UnixStream, PoolError> {
    loop {
        match listener.accept() {
            Ok((stream, _)) if peer_pid(&stream) == Some(child.id()) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Ok(_) => continue, // someone else's connection: refuse it
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(status) = child.try_wait()? {
            return Err(PoolError::HelperExited(status.to_string()));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(PoolError::StartTimeout(limit));
        }
        wait_readable(listener, Some(Duration::from_millis(2)));
    }
}

/// A pidfd for our own unreaped child (`pidfd_open(2)`, Linux 5.3+):
/// `None` on older kernels, where signals go by pid (still safe while the
/// child is unreaped, which is how the driver keeps it).
fn pidfd_of(pid: u32) -> Option<rustix::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

fn peer_pid(stream: &UnixStream) -> Option<u32> {
    let cred = rustix::net::sockopt::socket_peercred(stream).ok()?;
    Some(cred.pid.as_raw_nonzero().get() as u32)
}

/// Blocks until `fd` is readable (or hung up) or `limit` passes; no limit
/// waits forever (`poll(2)`).
pub(crate) fn wait_readable(fd: &impl rustix::fd::AsFd, limit: Option<Duration>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let timeout = limit.map(|l| Timespec::try_from(l).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 }));
    poll(&mut fds, timeout.as_ref()).is_ok_and(|n| n > 0)
}

/// Checks the helper's task list, then runs the initializer if any.
fn handshake(
    reader: &mut FrameReader,
    stream: &UnixStream,
    names: &[String],
    cfg: &Config,
    child: &mut Child,
    deadline: Option<Instant>,
) -> Result<(), PoolError> {
    let exited = |child: &mut Child, e: io::Error| match e.kind() {
        io::ErrorKind::TimedOut => PoolError::StartTimeout(cfg.start_timeout),
        _ => PoolError::HelperExited(child.wait().map_or_else(|e| e.to_string(), |s| s.to_string())),
    };
    let tasks = match recv_by(reader, stream, deadline).map_err(|e| exited(child, e))? {
        FromHelper::Ready { tasks } => tasks,
        FromHelper::NotInitialized => {
            let _ = child.wait(); // it exits on its own right after saying so
            return Err(PoolError::NotInitialized { program: cfg.program.display().to_string() });
        }
        FromHelper::Done { .. } => return Err(PoolError::Io(io::Error::other("helper sent a result before Ready"))),
    };
    if let Some(index) = (0..names.len().max(tasks.len())).find(|&i| names.get(i) != tasks.get(i)) {
        return Err(PoolError::TaskMismatch {
            index,
            ours: names.get(index).cloned(),
            theirs: tasks.get(index).cloned(),
        });
    }
    let Some((task, arg)) = &cfg.init else { return Ok(()) };
    send(&mut &*stream, &ToHelper::Run { job: 0, task: *task, args: std::borrow::Cow::Owned(vec![arg.clone()]) })?;
    match recv_by(reader, stream, deadline).map_err(|e| exited(child, e))? {
        FromHelper::Done { results, .. } => match results.into_iter().next() {
            Some(Err(f)) => Err(PoolError::InitFailed(TaskError::from(f))),
            _ => Ok(()),
        },
        _ => Err(PoolError::Io(io::Error::other("helper answered the initializer out of turn"))),
    }
}

/// The next frame, waiting no later than `deadline` (forever if `None`).
fn recv_by(reader: &mut FrameReader, stream: &UnixStream, deadline: Option<Instant>) -> io::Result<FromHelper> {
    loop {
        if let Some(msg) = reader.next() {
            return msg;
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if wait_readable(stream, left) && reader.fill(stream, false)? == Fill::Eof {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}
