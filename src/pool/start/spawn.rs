//! Starting a helper process and shaking hands with it.
//!
//! The helper is a new process running a program (by default this one),
//! started with `posix_spawn` (see `process`): nothing of the coordinator's
//! running state survives the `exec`, so pools are safe in threaded and
//! async programs. It talks to its driver over one end of a
//! `socketpair(2)` that it inherits (the only descriptor it inherits from
//! shmkit); the environment says which descriptor, and which process made
//! the pair.
//!
//! Why an inherited socket, not an address to connect to: it is what makes
//! a process a helper. A helper adopts the descriptor and marks it
//! close-on-exec, so the processes its tasks start see the variables but
//! not the socket, and run their `main` as usual; a launcher between the
//! pool and the helper (`timeout`, `strace -f`, a shell script) passes the
//! socket through, so the helper behind it still serves. Nothing is bound
//! anywhere, so nothing can leak or be connected to by others.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

use crate::pool::config::Config;
use crate::pool::error::{PoolError, TaskError};
use crate::pool::start::process::Target;
use crate::pool::start::process::{self, Out, Process, Spawn};
use crate::pool::start::relay;
use crate::pool::transport::region::Region;
use crate::pool::transport::ring::{self, Peer, Ring};
use crate::pool::transport::wire::{frame, Fill, FrameReader, FromHelper, ToHelper, PROTOCOL};
use crate::role::{PARENT_VAR, PIDNS_VAR, SOCKET_VAR, STATUS_VAR, TEST_VAR};
use crate::sync::raw::left;

/// A running, handshaken helper: the process started, the helper itself
/// (behind a launcher, another process), and its socket.
pub(crate) struct Started {
    pub child: Process,
    pub stream: UnixStream,
    /// Its output's relays, to drop once it is gone.
    pub relays: Vec<relay::Relay>,
    pub helper: Target,
    pub launcher: Option<Target>,
}

/// Kills and reaps a child unless disarmed: no half-started helper is
/// left behind when start-up fails.
struct Reaper(Option<Process>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill(); // already gone is fine
            let _ = child.wait();
        }
    }
}

/// Starts helper `index` and waits until it is ready to run `names`.
pub(crate) fn start(cfg: &Config, names: &[String], region: &Arc<Region>, index: usize) -> Result<Started, PoolError> {
    // `None`: wait as long as it takes.
    let deadline = Instant::now().checked_add(cfg.start_timeout);
    // Both ends close-on-exec: no other process this one starts, from any
    // thread, inherits either; the child's end is opened to it alone (see
    // `process`). At 3 or above: if this process runs with standard input
    // or output closed, the pair may have taken 0 or 1, which the child's
    // /dev/null would then replace.
    let (ours, first) =
        socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None).map_err(io::Error::from)?;
    let theirs = rustix::io::fcntl_dupfd_cloexec(&first, 3).map_err(io::Error::from)?;
    drop(first); // else our copy of the child's end would hide its death
                 // The kernel then tells us who sent what we read: the helper's pid, in
                 // our numbering, with its Ready (see `recv_noting_sender`).
    let _ = rustix::net::sockopt::set_socket_passcred(&ours, true);
    region.status(index).expect("drivers are numbered within the pool's segment").reset();
    // The last helper in this slot is reaped: nobody else uses these now.
    region.jobs(index).expect("numbered within").reset();
    region.results(index).expect("numbered within").reset();
    let mut env = cfg.env.clone();
    env.push((SOCKET_VAR.into(), theirs.as_raw_fd().to_string().into()));
    env.push((PARENT_VAR.into(), std::process::id().to_string().into()));
    env.push((PIDNS_VAR.into(), crate::os::pid_namespace().to_string().into()));
    env.push((STATUS_VAR.into(), format!("{}:{index}", region.name()).into()));
    if let Some(test) = &cfg.test {
        env.push((TEST_VAR.into(), test.into()));
    }
    let spawn_error = |source| PoolError::Spawn { program: cfg.program.display().to_string(), source };
    let relayed = |on: bool, to| on.then(|| relay::pipe(to)).transpose().map_err(spawn_error);
    let out_pipe = relayed(cfg.relay_output && !cfg.quiet, relay::Stream::Stdout)?;
    let err_pipe = relayed(cfg.relay_output, relay::Stream::Stderr)?;
    let (out_pipe, out_relay) = out_pipe.unzip();
    let (err_pipe, err_relay) = err_pipe.unzip();
    let (stdout, stderr) = (out(&out_pipe, cfg.quiet), out(&err_pipe, false));
    let what = Spawn { program: &cfg.program, args: &cfg.args, env, keep: theirs.as_fd(), stdout, stderr };
    let child = process::spawn(&what).map_err(spawn_error)?;
    // The child's copies are now the only ones: its death is our
    // end-of-stream, and the relays' end-of-file.
    drop((theirs, out_pipe, err_pipe));
    let mut reaper = Reaper(Some(child));
    // The relays' threads start while the helper loads (a pipe holds its
    // first output meanwhile): not on the way to its start.
    let relays = out_relay.into_iter().chain(err_relay).map(relay::Pending::start);
    let relays: Vec<relay::Relay> = relays.collect::<io::Result<_>>().map_err(spawn_error)?;
    let stream = UnixStream::from(ours);
    let mut reader = FrameReader::new();
    let rings = (region.jobs(index).expect("numbered within"), region.results(index).expect("numbered within"));
    let pid = handshake(&mut reader, &stream, names, cfg, reaper.0.as_mut().expect("child"), deadline, rings)?;
    let _ = rustix::net::sockopt::set_socket_passcred(&stream, false); // known now: doorbells need none
    let child = reaper.0.take().expect("child");
    // Behind a launcher the helper is not our child: signal and watch it
    // through a pidfd of its own, and the launcher through another.
    let (helper, launcher) = match pid == child.id() {
        true => (Target::new(pid), None),
        false => (Target::new(pid), Some(Target::new(child.id()))),
    };
    Ok(Started { child, stream, relays, helper, launcher })
}

/// Where a stream goes: its relay pipe if it has one, else nowhere if
/// `quiet`, else this process's own.
fn out(pipe: &Option<std::os::fd::OwnedFd>, quiet: bool) -> Out<'_> {
    match pipe {
        Some(fd) => Out::To(fd.as_fd()),
        None if quiet => Out::Null,
        None => Out::Inherit,
    }
}

/// Blocks until `fd` is readable (or hung up) or `limit` passes; no limit
/// waits forever (`poll(2)`).
pub(crate) fn wait_readable(fd: &impl rustix::fd::AsFd, limit: Option<Duration>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    poll(&mut fds, crate::os::timespec(limit).as_ref()).is_ok_and(|n| n > 0)
}

/// Checks the helper's task list, then runs the initializer if any;
/// returns the helper's own pid.
fn handshake(
    reader: &mut FrameReader,
    stream: &UnixStream,
    names: &[String],
    cfg: &Config,
    child: &mut Process,
    deadline: Option<Instant>,
    rings: (Ring<'_>, Ring<'_>),
) -> Result<u32, PoolError> {
    let exited = |child: &mut Process, e: io::Error| match e.kind() {
        io::ErrorKind::TimedOut => PoolError::StartTimeout(cfg.start_timeout),
        _ => {
            // It may still run (a launcher that closed the socket): end it
            // first, so that waiting for it cannot outlast the start timeout.
            child.kill();
            PoolError::HelperExited(child.wait().map_or_else(|e| e.to_string(), |s| describe_exit(&s)))
        }
    };
    let mut kernel_pid = None;
    let tasks = match recv_by(reader, stream, deadline, &mut kernel_pid).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => PoolError::Protocol(format!("its first message is unreadable ({e})")),
        _ => exited(child, e),
    })? {
        FromHelper::Ready { protocol, .. } if protocol != PROTOCOL => {
            return Err(PoolError::Protocol(format!("it speaks version {protocol}, this pool {PROTOCOL}")));
        }
        // Its `pid` is its own number for itself: see below for the one used.
        FromHelper::Ready { tasks, .. } => tasks,
        FromHelper::NotInitialized => {
            child.kill(); // it exits on its own right after saying so; a launcher may not
            let _ = child.wait();
            return Err(PoolError::NotInitialized { program: cfg.program.display().to_string() });
        }
        FromHelper::WrongTest { test } => {
            child.kill();
            let _ = child.wait();
            let built_in = cfg.test.clone().unwrap_or_default();
            return Err(PoolError::WrongTest { built_in, served_from: test });
        }
        FromHelper::Done { .. } | FromHelper::Skipped { .. } => {
            return Err(PoolError::Io(io::Error::other("helper sent a result before Ready")))
        }
    };
    // The kernel's word for who sent Ready, not the helper's: behind a
    // launcher that made a PID namespace, its own number is not ours, and
    // a kill through it would reach another process. Without that word
    // (no `SO_PASSCRED`), only the process the pool started is trusted.
    let pid = match kernel_pid {
        Some(p) if p != 0 => p,
        _ => child.id(),
    };
    if let Some(index) = (0..names.len().max(tasks.len())).find(|&i| names.get(i) != tasks.get(i)) {
        return Err(PoolError::TaskMismatch {
            index,
            ours: names.get(index).cloned(),
            theirs: tasks.get(index).cloned(),
        });
    }
    let Some((task, arg)) = &cfg.init else { return Ok(pid) };
    // From Ready on, jobs and results go through the rings (see `ring`).
    let run = frame(&ToHelper::Run { job: 0, task: *task, count: 1, args: std::borrow::Cow::Borrowed(arg) })?;
    ring::write_all(&rings.0, &Peer::socket(stream), &run, deadline).map_err(|e| exited(child, e))?;
    match recv_ring(&rings.1, stream, deadline).map_err(|e| exited(child, e))? {
        FromHelper::Done { results, .. } => match results.failures.into_iter().next() {
            Some((_, f)) => Err(PoolError::InitFailed(TaskError::from(f))),
            None => Ok(pid),
        },
        _ => Err(PoolError::Io(io::Error::other("helper answered the initializer out of turn"))),
    }
}

/// The next frame from the result ring, waiting no later than `deadline`
/// (forever if `None`).
fn recv_ring(results: &Ring<'_>, stream: &UnixStream, deadline: Option<Instant>) -> io::Result<FromHelper> {
    recv_with(&mut FrameReader::new(), deadline, |reader, left| {
        let peer = Peer::socket(stream);
        if ring::wait_readable(results, &peer, left, None).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))? {
            reader.fill_ring(results)?;
            results.wake_writer(&peer); // a result larger than the ring: the helper may wait for room
        }
        Ok(())
    })
}

/// The next frame from the socket, waiting no later than `deadline`
/// (forever if `None`).
fn recv_by(
    reader: &mut FrameReader,
    stream: &UnixStream,
    deadline: Option<Instant>,
    sender: &mut Option<u32>,
) -> io::Result<FromHelper> {
    recv_with(reader, deadline, |reader, left| {
        if wait_readable(stream, left) && reader.fill_with(|buf| recv_noting_sender(stream, buf, sender))? == Fill::Eof
        {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    })
}

/// Receives into `buf` without waiting, noting in `sender` the pid the
/// kernel attached (`SCM_CREDENTIALS`, with `SO_PASSCRED` set on our end:
/// see `unix(7)`): the sending process's pid as this process's PID
/// namespace numbers it, which a helper behind a launcher that made a new
/// namespace (`unshare -p`, `bwrap`) cannot report itself. 0 if it has no
/// number here.
fn recv_noting_sender(stream: &UnixStream, buf: &mut [u8], sender: &mut Option<u32>) -> io::Result<usize> {
    // (libc rather than rustix: rustix reads the pid as non-zero, and the
    // kernel reports 0 for a process with no number in this namespace.)
    // Room for one ucred exactly (CMSG_SPACE of 12 bytes is 32), aligned
    // for cmsghdr: descriptors sent along (SCM_RIGHTS) find no room, and
    // the kernel closes them rather than install them here.
    let mut space = [0u64; 4];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: an all-zero msghdr is valid (no name, no control, no iov).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space);
    let n = loop {
        // SAFETY: `msg` points at `iov` (at `buf`, writable for its length)
        // and at `space` (writable for `msg_controllen` bytes), all alive
        // for the call.
        let r = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
        match r {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            -1 => return Err(io::Error::last_os_error()),
            n => break n as usize,
        }
    };
    // SAFETY: `msg` was filled by recvmsg just above; CMSG_FIRSTHDR and
    // CMSG_NXTHDR only return headers inside its control buffer (or null).
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` is a non-null header inside `space` (see above).
        let h = unsafe { &*c };
        // SAFETY: CMSG_LEN is arithmetic on its argument.
        let need = unsafe { libc::CMSG_LEN(size_of::<libc::ucred>() as u32) } as usize;
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_CREDENTIALS && h.cmsg_len >= need {
            // SAFETY: the header says its data holds a ucred (length checked
            // just above), inside `space`; read unaligned, as a copy.
            let cred: libc::ucred = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast()) };
            sender.get_or_insert(cred.pid as u32);
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    Ok(n)
}

/// The next frame `reader` holds, calling `wait_and_fill` with the time
/// left until it holds one, or `TimedOut` once `deadline` has passed.
fn recv_with(
    reader: &mut FrameReader,
    deadline: Option<Instant>,
    mut wait_and_fill: impl FnMut(&mut FrameReader, Option<Duration>) -> io::Result<()>,
) -> io::Result<FromHelper> {
    loop {
        if let Some(msg) = reader.next() {
            return msg;
        }
        let left = left(deadline);
        if left.is_some_and(|l| l.is_zero()) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        wait_and_fill(reader, left)?;
    }
}

/// A helper's exit status, with what shmkit's own exit codes mean.
fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => "it exited with status 0: its main returned without serving".into(),
        (Some(2), _) => "exit status 2: a helper binary started without a pool to serve".into(),
        (Some(3), _) => "exit status 3: it could not reach its pool (see its standard error)".into(),
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => status.to_string(),
    }
}
