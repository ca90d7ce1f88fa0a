//! A one-way byte stream in shared memory between a driver and its helper:
//! one writer, one reader, no lock, no system call while both are busy.
//!
//! ```text
//! +0    tail: u64, bytes written so far (the writer's)   | writer_waiting: u32
//! +64   head: u64, bytes read so far (the reader's)      | reader_waiting: u32
//! +192  data: `cap` bytes, a power of two; byte n is at n % cap
//! ```
//!
//! The writer copies bytes in, then publishes them by moving `tail`
//! (release); the reader copies them out after reading `tail` (acquire),
//! then frees them by moving `head` (release). Frames (see `wire`) travel
//! as on a socket: a frame longer than the ring goes through in pieces.
//!
//! **Waking.** A side with nothing to do spins briefly, then sleeps. Before
//! sleeping it sets its waiting flag and checks the ring once more; the
//! other side, after moving `tail` or `head`, swaps the flag back to 0
//! and, if it was set, wakes it. Either the sleeper's re-check sees the
//! move, or the mover sees the flag (both are sequentially consistent), so
//! no wake-up is lost; a spurious one costs a re-check.
//!
//! The coordinator sleeps in `poll(2)` on the helper's socket (and pidfd),
//! and is woken by a one-byte *doorbell* on the socket, which also ends
//! its sleep when the helper dies. The helper sleeps on a futex on its
//! waiting flag itself (`futex(2)`, `FUTEX_WAIT`, at most 5 s at a time,
//! after which it looks for the socket's hang-up; its watcher thread
//! exits at once on one). The difference matters on few cores: a socket write wakes
//! its reader as a *synchronous* wake-up, which the scheduler places on
//! the writer's CPU, expecting the writer to sleep; a caller that then
//! spins for the answer shares that CPU with the helper (a round trip
//! took 7 µs instead of 1.6 µs on two cores, until load balancing moved
//! one of them, milliseconds later). A futex wake-up is placed on an idle
//! CPU if there is one.
//!
//! `tail` and `head` are written by the other process: a ring whose
//! counters claim more than `cap` bytes in flight is broken, and reported
//! so, never followed.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sync::raw::futex_wake_all;
use crate::sync::spin::{spin, WINDOW};

use crate::segment::Segment;

/// Bytes of a ring's header.
pub(crate) const HEADER: usize = 192;
const TAIL: usize = 0;
const WRITER_WAITING: usize = 8;
const HEAD: usize = 64;
const READER_WAITING: usize = 72;

/// Longest a helper sleeps on its futex before it looks for its
/// coordinator's hang-up (its watcher thread sees one at once; this is
/// for a helper whose watcher could not start). A wake-up is never lost
/// to a killed waker here: the waker is the coordinator, whose death
/// ends the helper.
const HELPER_NAP: Duration = Duration::from_secs(5);

/// Which side reads a ring, and so which side sleeps how (module note).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reader {
    /// The job ring: the helper reads, the coordinator writes.
    Helper,
    /// The result ring: the coordinator reads, the helper writes.
    Coordinator,
}

/// One ring in a segment: its header at `at`, then `cap` bytes of data.
#[derive(Clone, Copy)]
pub(crate) struct Ring<'a> {
    seg: &'a Segment,
    at: usize,
    cap: usize,
    reader: Reader,
}

/// The ring's counters say more than it holds: another process wrote over
/// them. The stream is lost; its helper must be replaced.
fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "a pool ring's counters are inconsistent")
}

impl<'a> Ring<'a> {
    /// The ring at `at` of `seg`, of `cap` data bytes (a power of two),
    /// read by `reader`.
    pub fn new(seg: &'a Segment, at: usize, cap: usize, reader: Reader) -> Ring<'a> {
        debug_assert!(cap.is_power_of_two());
        // Every later access is bounds-checked by `Segment`; check the
        // whole extent once so that a bad layout fails here, loudly.
        let _ = seg.bytes(at, HEADER + cap);
        Ring { seg, at, cap, reader }
    }

    fn word(&self, offset: usize) -> &'a AtomicU64 {
        self.seg.atomic_u64(self.at + offset)
    }

    fn flag(&self, offset: usize) -> &'a AtomicU32 {
        self.seg.atomic_u32(self.at + offset)
    }

    /// Empties the ring and clears its flags, for a new pair of ends.
    pub fn reset(&self) {
        for w in [TAIL, HEAD] {
            self.word(w).store(0, Ordering::SeqCst);
        }
        for f in [WRITER_WAITING, READER_WAITING] {
            self.flag(f).store(0, Ordering::SeqCst);
        }
    }

    /// Bytes written and not yet read, checked.
    fn in_flight(&self, tail: u64, head: u64) -> io::Result<usize> {
        let n = tail.checked_sub(head).ok_or_else(broken)?;
        usize::try_from(n).ok().filter(|&n| n <= self.cap).ok_or_else(broken)
    }

    /// Writer: copies as much of `bytes` as fits, never waiting; the count.
    pub fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        let tail = self.word(TAIL).load(Ordering::Relaxed); // ours
        let head = self.word(HEAD).load(Ordering::Acquire); // the reader's: its reads are done
        let free = self.cap - self.in_flight(tail, head)?;
        let n = free.min(bytes.len());
        self.copy_in(tail, &bytes[..n]);
        self.word(TAIL).store(tail + n as u64, Ordering::SeqCst);
        Ok(n)
    }

    /// Reader: copies up to `out.len()` bytes out, never waiting; the count.
    pub fn read(&self, out: &mut [u8]) -> io::Result<usize> {
        let head = self.word(HEAD).load(Ordering::Relaxed); // ours
        let tail = self.word(TAIL).load(Ordering::Acquire); // the writer's: its bytes are in
        let n = self.in_flight(tail, head)?.min(out.len());
        self.copy_out(head, &mut out[..n]);
        self.word(HEAD).store(head + n as u64, Ordering::SeqCst);
        Ok(n)
    }

    /// Bytes the writer has written since the ring was reset.
    pub fn written(&self) -> u64 {
        self.word(TAIL).load(Ordering::Acquire)
    }

    /// Bytes the reader has read since the ring was reset.
    pub fn consumed(&self) -> u64 {
        self.word(HEAD).load(Ordering::Acquire)
    }

    /// True if there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.word(TAIL).load(Ordering::SeqCst) == self.word(HEAD).load(Ordering::SeqCst)
    }

    /// True if there is no room to write.
    pub fn is_full(&self) -> bool {
        let (tail, head) = (self.word(TAIL).load(Ordering::SeqCst), self.word(HEAD).load(Ordering::SeqCst));
        self.in_flight(tail, head).map_or(true, |n| n == self.cap)
    }

    /// Reader, about to sleep: asks the writer to ring after its next write.
    pub fn reader_waits(&self) {
        self.flag(READER_WAITING).store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Writer, about to sleep: asks the reader to ring after its next read.
    pub fn writer_waits(&self) {
        self.flag(WRITER_WAITING).store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Writer, after a write: true if the reader sleeps and must be rung
    /// (once: the flag is cleared).
    pub fn reader_to_wake(&self) -> bool {
        self.flag(READER_WAITING).swap(0, Ordering::SeqCst) != 0
    }

    /// Reader, after a read: true if the writer sleeps and must be rung.
    pub fn writer_to_wake(&self) -> bool {
        self.flag(WRITER_WAITING).swap(0, Ordering::SeqCst) != 0
    }

    /// Writer, after a write: wakes the reader if it sleeps (once).
    pub fn wake_reader(&self, peer: &Peer<'_>) {
        if self.reader_to_wake() {
            match self.reader {
                Reader::Helper => futex_wake_all(self.flag(READER_WAITING)),
                Reader::Coordinator => ring_bell(peer),
            }
        }
    }

    /// Reader, after a read: wakes the writer if it sleeps for room (once).
    pub fn wake_writer(&self, peer: &Peer<'_>) {
        if self.writer_to_wake() {
            match self.reader {
                Reader::Helper => ring_bell(peer), // the coordinator writes
                Reader::Coordinator => futex_wake_all(self.flag(WRITER_WAITING)),
            }
        }
    }

    /// Sleeps (its waiting flag is up) until woken, the other side is
    /// gone (false), or `limit` passes; as the reader of this ring if
    /// `as_reader`, else as its writer. A helper sleeps on the flag's
    /// futex, at most [`HELPER_NAP`] at a time; the coordinator on `peer`.
    fn sleep(&self, as_reader: bool, peer: &Peer<'_>, limit: Option<Duration>) -> bool {
        if (self.reader == Reader::Helper) != as_reader {
            return sleep_on_bell(peer, limit);
        }
        let flag = self.flag(if as_reader { READER_WAITING } else { WRITER_WAITING });
        // Not `raw::futex_wait`, which caps a sleep at 20 ms: an idle
        // helper would wake 50 times a second.
        let nap = crate::os::timespec(Some(limit.map_or(HELPER_NAP, |l| l.min(HELPER_NAP))));
        let _ = rustix::thread::futex::wait(flag, rustix::thread::futex::Flags::empty(), 1, nap.as_ref());
        connected(peer.socket)
    }

    /// Clears this side's waiting flags after a sleep.
    pub fn awake(&self, reader: bool) {
        let f = if reader { READER_WAITING } else { WRITER_WAITING };
        self.flag(f).store(0, Ordering::SeqCst);
    }

    /// Copies `bytes` into the data from stream position `pos`, wrapping.
    fn copy_in(&self, pos: u64, bytes: &[u8]) {
        let start = (pos as usize) & (self.cap - 1);
        let first = bytes.len().min(self.cap - start);
        let data = self.at + HEADER;
        // `Segment::write` checks bounds; the reader does not touch these
        // bytes until `tail` moves past them (release, after the copy).
        self.seg.write(data + start, &bytes[..first]);
        self.seg.write(data, &bytes[first..]);
    }

    /// Copies bytes out of the data from stream position `pos`, wrapping.
    fn copy_out(&self, pos: u64, out: &mut [u8]) {
        let start = (pos as usize) & (self.cap - 1);
        let first = out.len().min(self.cap - start);
        let data = self.at + HEADER;
        let (a, b) = out.split_at_mut(first);
        for (from, to) in [(data + start, a), (data, b)] {
            let src = self.seg.bytes(from, to.len());
            // SAFETY: `bytes` checked the range lies in the data; the writer
            // published these bytes (`tail`, acquire) and does not touch them
            // again until `head` moves past them (release, after this copy);
            // `to` is our own buffer, so the two do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(src, to.as_mut_ptr(), to.len()) };
        }
    }
}

/// The other side, as a sleeper sees it: the helper's socket (doorbells,
/// and end-of-stream when the other process is gone) and, on the driver's
/// side, the helper's pidfd, readable once it has exited: the socket alone
/// may never hang up, if the helper forked a child that still holds it.
#[derive(Clone, Copy)]
pub(crate) struct Peer<'a> {
    pub socket: BorrowedFd<'a>,
    pub pidfd: Option<BorrowedFd<'a>>,
}

impl<'a> Peer<'a> {
    /// The other side through `socket` alone.
    pub fn socket(socket: &'a impl AsFd) -> Peer<'a> {
        Peer { socket: socket.as_fd(), pidfd: None }
    }
}

/// Rings the other side's doorbell: one byte on the socket, never waiting
/// (a full socket already holds a ring the other side has not heard).
pub(crate) fn ring_bell(peer: &Peer<'_>) {
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    let _ = rustix::net::send(peer.socket, &[1], flags);
}

/// After a sleep: reads every doorbell byte waiting on the socket. False
/// at end of stream (the other process is gone).
pub(crate) fn drain_bells(socket: BorrowedFd<'_>) -> bool {
    let mut sink = [0u8; 64];
    loop {
        match rustix::net::recv(socket, &mut sink, rustix::net::RecvFlags::DONTWAIT) {
            Ok((0, _)) => return false,
            Ok(_) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return true,
            Err(_) => return false,
        }
    }
}

/// False if the socket's other end is gone (looked at without waiting).
fn connected(socket: BorrowedFd<'_>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let gone = PollFlags::HUP | PollFlags::RDHUP | PollFlags::ERR | PollFlags::NVAL;
    let mut fds = [PollFd::new(&socket, PollFlags::RDHUP)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    !matches!(poll(&mut fds, Some(&zero)), Ok(1) if fds[0].revents().intersects(gone))
}

/// Sleeps until a doorbell, the other side's end, or `limit` (`None`: no
/// limit). False if the other side is gone.
pub(crate) fn sleep_on_bell(peer: &Peer<'_>, limit: Option<Duration>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let gone = PollFlags::HUP | PollFlags::RDHUP | PollFlags::ERR | PollFlags::NVAL;
    let mut fds =
        [PollFd::new(&peer.socket, PollFlags::IN | PollFlags::RDHUP), PollFd::new(&peer.socket, PollFlags::empty())];
    let n = match &peer.pidfd {
        Some(pidfd) => {
            fds[1] = PollFd::new(pidfd, PollFlags::IN);
            2
        }
        None => 1,
    };
    match poll(&mut fds[..n], crate::os::timespec(limit).as_ref()) {
        Ok(k) if k > 0 => {
            let exited = n == 2 && !fds[1].revents().is_empty();
            !exited && !fds[0].revents().intersects(gone) && drain_bells(peer.socket)
        }
        _ => true, // timed out, or interrupted: the caller re-checks
    }
}

/// Writes all of `bytes` into `ring`, ringing its reader as they go, and
/// waiting for room when it is full: briefly spinning, then asleep on the
/// doorbell. `TimedOut` past `deadline`; `BrokenPipe` if the other side is gone.
pub(crate) fn write_all(
    ring: &Ring<'_>,
    peer: &Peer<'_>,
    mut bytes: &[u8],
    deadline: Option<Instant>,
) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = ring.write(bytes)?;
        bytes = &bytes[n..];
        if n > 0 {
            ring.wake_reader(peer);
        }
        if bytes.is_empty() || spin(WINDOW, || (!ring.is_full()).then_some(())).is_some() {
            continue;
        }
        ring.writer_waits();
        if ring.is_full() {
            let left = crate::sync::raw::left(deadline);
            if left.is_some_and(|l| l.is_zero()) {
                ring.awake(false);
                return Err(io::ErrorKind::TimedOut.into());
            }
            if !ring.sleep(false, peer, left) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
        }
        ring.awake(false);
    }
    Ok(())
}

/// Reader: waits until `ring` has bytes (true), spinning briefly, then
/// asleep on the doorbell for at most `limit` (false when it ran out, or
/// when `also_room` is given and that ring has room: the caller has more
/// to write); `BrokenPipe` if the other side is gone.
pub(crate) fn wait_readable(
    ring: &Ring<'_>,
    peer: &Peer<'_>,
    limit: Option<Duration>,
    also_room: Option<&Ring<'_>>,
) -> io::Result<bool> {
    let window = limit.map_or(WINDOW, |l| l.min(WINDOW));
    let room = || also_room.is_some_and(|r| !r.is_full());
    if spin(window, || (!ring.is_empty() || room()).then_some(())).is_some() {
        return Ok(!ring.is_empty());
    }
    ring.reader_waits();
    if let Some(r) = also_room {
        r.writer_waits();
    }
    // Checked again after the flags are up: a move before them is seen here,
    // a move after them rings.
    let alive = if ring.is_empty() && !room() { ring.sleep(true, peer, limit) } else { true };
    ring.awake(true);
    if let Some(r) = also_room {
        r.awake(false);
    }
    match alive {
        true => Ok(!ring.is_empty()),
        false => Err(io::ErrorKind::BrokenPipe.into()),
    }
}

/// After a helper's death: waits up to `limit` for its end of the socket
/// to close. Its process is gone when its driver reaped it, but behind a
/// launcher (`timeout`, `strace`) the reaped process is the launcher, and
/// the helper dies a moment later (`PR_SET_PDEATHSIG`): until then it
/// could still write into rings about to be reset for its successor.
pub(crate) fn wait_hangup(socket: BorrowedFd<'_>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let peer = Peer { socket, pidfd: None };
        if !sleep_on_bell(&peer, Some(deadline.saturating_duration_since(Instant::now()))) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::SegmentKind;
    use crate::segment::other_head;

    fn segment(len: usize) -> Segment {
        let make = |name: &str| Segment::create(name, SegmentKind::Pool, &other_head(&[]), len, |_| Ok(()));
        crate::name::retry_unique(make).unwrap()
    }

    #[test]
    fn bytes_come_out_in_order_across_the_wrap_and_a_full_ring_takes_nothing() {
        let seg = segment(HEADER + 64);
        let ring = Ring::new(&seg, 0, 64, Reader::Coordinator);
        let mut out = [0u8; 64];
        let mut next = 0u8;
        let mut expect = 0u8;
        for round in 0..50 {
            let chunk: Vec<u8> = (0..(round % 40 + 1))
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            let n = ring.write(&chunk).unwrap();
            assert_eq!(n, chunk.len(), "room for it");
            let got = ring.read(&mut out).unwrap();
            assert_eq!(got, n);
            for &b in &out[..got] {
                expect = expect.wrapping_add(1);
                assert_eq!(b, expect);
            }
        }
        assert_eq!(ring.write(&[7; 100]).unwrap(), 64);
        assert!(ring.is_full());
        assert_eq!(ring.write(&[7]).unwrap(), 0);
        assert_eq!(ring.read(&mut out[..10]).unwrap(), 10);
        assert_eq!(ring.write(&[7; 20]).unwrap(), 10);
    }

    #[test]
    fn counters_another_process_scribbled_are_reported_not_followed() {
        let seg = segment(HEADER + 64);
        let ring = Ring::new(&seg, 0, 64, Reader::Coordinator);
        seg.atomic_u64(TAIL).store(1000, Ordering::SeqCst);
        assert_eq!(ring.read(&mut [0; 8]).unwrap_err().kind(), io::ErrorKind::InvalidData);
        seg.atomic_u64(TAIL).store(0, Ordering::SeqCst);
        seg.atomic_u64(HEAD).store(5, Ordering::SeqCst);
        assert_eq!(ring.write(&[1]).unwrap_err().kind(), io::ErrorKind::InvalidData);
        ring.reset();
        assert_eq!(ring.write(&[1]).unwrap(), 1);
    }

    #[test]
    fn a_waiting_flag_is_answered_once() {
        let seg = segment(HEADER + 64);
        let ring = Ring::new(&seg, 0, 64, Reader::Coordinator);
        assert!(!ring.reader_to_wake());
        ring.reader_waits();
        assert!(ring.reader_to_wake());
        assert!(!ring.reader_to_wake(), "one ring per sleep");
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        ring_bell(&Peer::socket(&a));
        ring_bell(&Peer::socket(&a));
        assert!(sleep_on_bell(&Peer::socket(&b), Some(Duration::from_secs(5))));
        assert!(drain_bells(b.as_fd()), "drained, still connected");
        drop(a);
        assert!(!sleep_on_bell(&Peer::socket(&b), Some(Duration::from_secs(5))), "the other end is gone");
    }
}
