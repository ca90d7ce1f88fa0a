//! Helpers' output, relayed a whole line at a time.
//!
//! Rust's standard error is unbuffered: `eprintln!("{a} {b}")` reaches the
//! file in several `write(2)` calls, so helpers printing at once on a
//! shared terminal interleave mid-line. A helper's standard output and
//! error are pipes instead, and a thread per pipe copies only complete
//! lines to this process's own stream, each batch of lines in one write
//! under the stream's lock. The pipe outlives the helper, so the last
//! words of one that crashed (a panic message, an abort) still arrive.
//!
//! The thread writes to file descriptor 1 or 2 itself, not through std's
//! `Stdout`/`Stderr`, whose lock a caller may hold (`stdout().lock()`
//! around a `pool.map`) while helpers print: waiting for it would fill the
//! pipe and stall the helpers, and the call would never end. Lines stay
//! whole because each batch of them is one `write(2)`.
//!
//! The thread never blocks a helper for long: if this process's stream
//! fails (closed, a broken pipe), it keeps reading and drops the output.
//! It ends at end-of-file, when the helper and whatever it started have
//! closed their ends, or after [`GRACE`] of quiet once the helper is gone
//! (its [`Relay`] dropped), even if a process the helper started keeps the
//! pipe open: that process's later writes then fail (`EPIPE`). Tasks that
//! start long-lived processes should give them output of their own.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which of this process's streams a relay writes to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Longest partial line held back before it is written anyway: a helper
/// that prints megabytes without a newline must not grow this buffer.
const HOLD_MAX: usize = 64 << 10;

/// How long a relay goes on after its helper is gone, for what the
/// helper's last moments left in the pipe.
const GRACE: Duration = Duration::from_millis(500);

/// A relay's thread, as the helper's owner holds it: dropped once the
/// helper is gone, it lets the thread end after [`GRACE`] of quiet even if
/// the pipe stays open (a process the helper started holds it).
pub(crate) struct Relay(Arc<AtomicBool>);

impl Drop for Relay {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Makes a pipe for a helper's standard output or error; returns the
/// write end (close-on-exec, numbered 3 or above, as the socket is) and
/// the read end, to relay once the helper is on its way ([`Pending::start`]:
/// the pipe holds what the helper writes meanwhile, so starting the
/// thread need not delay the helper's start).
pub(crate) fn pipe(to: Stream) -> io::Result<(OwnedFd, Pending)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let write = rustix::io::fcntl_dupfd_cloexec(&write, 3)?;
    Ok((write, Pending { read, to }))
}

/// A pipe's read end, not relayed yet.
pub(crate) struct Pending {
    read: OwnedFd,
    to: Stream,
}

impl Pending {
    /// Starts the thread that relays the pipe to its stream.
    pub fn start(self) -> io::Result<Relay> {
        let gone = Arc::new(AtomicBool::new(false));
        let reader = Pipe { fd: self.read, gone: gone.clone(), since: None };
        let to = self.to;
        std::thread::Builder::new().name("shmkit-relay".into()).stack_size(64 << 10).spawn(move || {
            copy_lines(reader, |bytes| write_all(to, bytes));
        })?;
        Ok(Relay(gone))
    }
}

/// The read end, as a reader that ends at end-of-file or [`GRACE`] after
/// the helper is gone with nothing more to read.
struct Pipe {
    fd: OwnedFd,
    gone: Arc<AtomicBool>,
    since: Option<Instant>,
}

impl Read for Pipe {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        loop {
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            let tenth = Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
            match poll(&mut fds, Some(&tenth)) {
                Ok(0) => {}
                Ok(_) => {
                    self.since = None; // output: the quiet starts again
                    return Ok(rustix::io::read(&self.fd, out)?);
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if self.gone.load(Ordering::Acquire) && self.since.get_or_insert_with(Instant::now).elapsed() >= GRACE {
                return Ok(0);
            }
        }
    }
}

/// Copies `from` to `write` until end-of-file, whole lines per call.
fn copy_lines(mut from: impl Read, mut write: impl FnMut(&[u8]) -> io::Result<()>) {
    let mut buf = Vec::with_capacity(8 << 10);
    let mut chunk = [0u8; 8 << 10];
    let mut broken = false;
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        let cut = match buf.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if buf.len() >= HOLD_MAX => buf.len(),
            None => continue,
        };
        broken = broken || write(&buf[..cut]).is_err();
        buf.drain(..cut);
    }
    if !buf.is_empty() && !broken {
        let _ = write(&buf);
    }
}

/// Writes `bytes` to file descriptor 1 or 2 (`write(2)`, repeated only
/// if the kernel takes part of it), without std's stream locks.
fn write_all(to: Stream, mut bytes: &[u8]) -> io::Result<()> {
    // `as_fd` borrows the descriptor; it takes no lock.
    let (out, err) = (io::stdout(), io::stderr());
    let fd = match to {
        Stream::Stdout => out.as_fd(),
        Stream::Stderr => err.as_fd(),
    };
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out the given pieces one `read` at a time.
    struct Pieces(Vec<&'static [u8]>);

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match self.0.first_mut() {
                None => Ok(0),
                Some(p) => {
                    let n = p.len().min(out.len());
                    out[..n].copy_from_slice(&p[..n]);
                    *p = &p[n..];
                    if p.is_empty() {
                        self.0.remove(0);
                    }
                    Ok(n)
                }
            }
        }
    }

    /// The writes `copy_lines` makes of `pieces`.
    fn writes(pieces: Vec<&'static [u8]>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        copy_lines(Pieces(pieces), |b| {
            out.push(b.to_vec());
            Ok(())
        });
        out
    }

    #[test]
    fn lines_split_across_reads_go_out_whole_and_the_tail_at_the_end() {
        let got = writes(vec![b"one\ntw", b"o\nthr", b"ee", b"\nfour"]);
        assert_eq!(got, [&b"one\n"[..], b"two\n", b"three\n", b"four"]);
    }

    #[test]
    fn a_line_longer_than_the_hold_goes_out_in_pieces_without_loss() {
        static LONG: [u8; 3 * HOLD_MAX] = [b'x'; 3 * HOLD_MAX];
        let got = writes(vec![&LONG, b"\n"]);
        assert!(got.iter().all(|w| w.len() <= HOLD_MAX + (8 << 10)), "a write held too much");
        assert_eq!(got.concat().len(), 3 * HOLD_MAX + 1);
    }

    #[test]
    fn a_broken_stream_is_drained_to_the_end() {
        let (mut calls, mut reader) = (0, Pieces(vec![b"a\n", b"b\n", b"c"]));
        copy_lines(&mut reader, |_| {
            calls += 1;
            Err(io::ErrorKind::BrokenPipe.into())
        });
        assert_eq!(calls, 1, "no writes after the stream broke");
        assert!(reader.0.is_empty(), "everything read: the helper never blocks");
    }
}
