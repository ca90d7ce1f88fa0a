//! Messages between a coordinator and its helpers, and their framing.
//!
//! Each message is a postcard-encoded enum behind a 4-byte little-endian
//! length. Frames go through a helper's rings (see `ring`; one writer per
//! ring, so frames never interleave; a long one goes in pieces), or, for
//! the handshake, its socket. Bulk data never travels here: arrays are
//! passed by segment name.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

/// The version of the helper protocol (messages, rings, status words): a
/// helper binary built with another shmkit is refused at start, not left
/// to misread jobs. Version 2: jobs and results through shared-memory rings;
/// 3: skip tables, `Skipped`, and helpers that report their pid; 4:
/// claim tables and `Claim`; 5: the helper sleeps on a futex, not the
/// socket (see `ring`).
pub(crate) const PROTOCOL: u32 = 5;

/// Largest frame accepted; a longer length prefix means a corrupt stream.
const MAX_FRAME: usize = 256 << 20;

/// Coordinator to helper.
/// Borrows the arguments when sending, so a job keeps them for a rerun.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToHelper<'a> {
    /// Run task number `task` once per item of `args`: `count` encoded
    /// arguments one after another (see `codec`).
    Run {
        job: u64,
        task: u32,
        count: u32,
        #[serde(with = "bytes")]
        args: Cow<'a, [u8]>,
    },
    /// Finish and exit.
    Exit,
    /// Run row task `task` on chunks claimed from a claim table (see
    /// `claims`) until none is left; the answer is one item: the `Items`
    /// of the chunks it ran, in the order claimed.
    Claim {
        job: u64,
        task: u32,
        /// Which claim job of the pass this is, and where and what it claims.
        claim: ClaimRef,
        /// The task's arguments for any chunk (rows 0..0): the rows
        /// claimed replace them.
        #[serde(with = "bytes")]
        args: Cow<'a, [u8]>,
    },
}

impl ToHelper<'_> {
    /// The job a message asks to run, if it asks to run one.
    pub(crate) fn job(&self) -> Option<u64> {
        match self {
            ToHelper::Run { job, .. } | ToHelper::Claim { job, .. } => Some(*job),
            ToHelper::Exit => None,
        }
    }
}

/// Where a claim job takes its chunks: table `table` of the pool's
/// segment, pass `pass`, `chunks` chunks, as claimer `claimer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClaimRef {
    pub table: u32,
    pub pass: u32,
    pub chunks: u32,
    pub claimer: u16,
}

/// Helper to coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromHelper {
    /// Started, speaks protocol `protocol` (see [`PROTOCOL`]), and
    /// registers these task names in this order; `pid` is the helper's own
    /// (behind a launcher, not the process the pool started).
    Ready { protocol: u32, tasks: Vec<String>, pid: u32 },
    /// Results of a `Run`, one per argument, failures among them.
    Done { job: u64, results: Items },
    /// A `Run` that was cancelled before its task began: nothing ran.
    Skipped { job: u64 },
    /// This process was started as a helper but its `main` used shmkit
    /// (a segment, a pool) before calling `shmkit::init`; it exits.
    NotInitialized,
    /// A helper of a pool built in a `#[test]` reached `init` in another
    /// test (`test`) than the pool's; it exits.
    WrongTest { test: String },
}

/// A run of encoded items: a job's arguments, or its results (see `codec`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Items {
    /// The items that did not fail, encoded one after another.
    #[serde(with = "bytes")]
    pub data: Vec<u8>,
    /// How many items the batch stands for (failed ones included).
    pub count: u32,
    /// The items that failed, by index, ascending; they take no bytes.
    pub failures: Vec<(u32, Failure)>,
}

impl Items {
    /// An empty batch for `count` items.
    pub fn with_count(count: u32) -> Items {
        Items { data: Vec::new(), count, failures: Vec::new() }
    }

    /// Records item `index` as failed.
    pub fn fail(&mut self, index: u32, why: Failure) {
        self.failures.push((index, why));
    }
}

/// Where a chunk task finds its rows; sent instead of the data itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChunkArgs {
    /// Segment name or file path.
    pub(crate) location: String,
    /// True for a file-backed array.
    pub(crate) file: bool,
    /// Device and inode of the segment the coordinator means, so a helper
    /// never writes into a stale mapping of a name that was since
    /// recreated, nor into another mount's file with the same inode number.
    pub(crate) dev: u64,
    /// See `dev`.
    pub(crate) ino: u64,
    /// Rows along the first axis.
    pub(crate) start: usize,
    /// End of the rows (exclusive).
    pub(crate) end: usize,
}

/// How a task failed inside a helper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// The task panicked with this message.
    Panic(String),
    /// The task returned an error; its chain, outermost first.
    Error(Vec<String>),
    /// Arguments or result could not be (de)serialised.
    Codec(String),
    /// No task has that number (the helper registers different tasks).
    Unknown(u32),
}

/// Encodes `msg` into one length-prefixed frame; `Err` (with what to do)
/// if it is larger than a frame may be.
pub(crate) fn frame<T: Serialize>(msg: &T) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    frame_into(&mut out, msg)?;
    Ok(out)
}

/// Appends `msg` to `out` as one length-prefixed frame, with no buffer of
/// its own; on `Err` (too large), `out` is as it was.
pub(crate) fn frame_into<T: Serialize>(out: &mut Vec<u8>, msg: &T) -> io::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let written = postcard::to_extend(msg, Appender(out)).map(|_| ());
    let len = out.len() - start - 4;
    let refused = match written {
        Err(e) => Some(io::Error::other(e)),
        Ok(()) if len > MAX_FRAME => Some(io::Error::new(io::ErrorKind::InvalidInput, too_large(len))),
        Ok(()) => None,
    };
    if let Some(e) = refused {
        out.truncate(start);
        return Err(e);
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Lets postcard append to a buffer it does not own.
pub(crate) struct Appender<'a>(pub &'a mut Vec<u8>);

impl Extend<u8> for Appender<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// Why a message of `len` bytes cannot be sent, and what to do instead.
pub(crate) fn too_large(len: usize) -> String {
    format!(
        "{len} bytes, more than the {} MiB one message may carry: pass large data in a SharedArray (by name) instead",
        MAX_FRAME >> 20
    )
}

/// True if encoded items of `len` bytes fit in one frame, with room for
/// the message around them (and, for results, a few failures).
pub(crate) fn fits(len: usize) -> bool {
    len <= MAX_FRAME - 4096
}

/// Writes `msg` as one frame.
pub(crate) fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    w.write_all(&frame(msg)?)
}

/// Reads length-prefixed frames from a socket, several per `recv` when
/// they are there, and without blocking when asked: what lets a waiter
/// poll a short window before it sleeps (see `spin`).
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// What a [`FrameReader::fill`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    Data,
    WouldBlock,
    Eof,
}

impl Default for FrameReader {
    /// A reader whose buffer is allocated at its first read: a placeholder
    /// costs nothing.
    fn default() -> FrameReader {
        FrameReader { buf: Vec::new(), start: 0, end: 0 }
    }
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader { buf: vec![0; 64 << 10], start: 0, end: 0 }
    }

    /// A reader holding `bytes` as if they had arrived (for the fuzzer).
    #[cfg(fuzzing)]
    pub fn from_bytes(bytes: &[u8]) -> FrameReader {
        FrameReader { buf: bytes.to_vec(), start: 0, end: bytes.len() }
    }

    /// The next whole buffered frame, decoded; `None` until one is there.
    pub fn next<T: for<'de> Deserialize<'de>>(&mut self) -> Option<io::Result<T>> {
        let avail = &self.buf[self.start..self.end];
        let len = u32::from_le_bytes(avail.get(..4)?.try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Some(Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes"))));
        }
        let frame = avail.get(4..4 + len)?;
        let msg = postcard::from_bytes(frame).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        self.start += 4 + len;
        Some(msg)
    }

    /// Reads what the socket has (waiting for data if `block`).
    #[cfg(test)]
    pub fn fill(&mut self, fd: impl rustix::fd::AsFd, block: bool) -> io::Result<Fill> {
        self.make_room();
        let flags = if block { rustix::net::RecvFlags::empty() } else { rustix::net::RecvFlags::DONTWAIT };
        loop {
            return match rustix::net::recv(&fd, &mut self.buf[self.end..], flags) {
                Ok((0, _)) => Ok(Fill::Eof),
                Ok((n, _)) => {
                    self.end += n;
                    Ok(Fill::Data)
                }
                Err(rustix::io::Errno::AGAIN) => Ok(Fill::WouldBlock),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => Err(e.into()),
            };
        }
    }

    /// Reads with `read`, which fills the slice it is given and says how
    /// many bytes it put there (0 at end of stream).
    pub fn fill_with(&mut self, read: impl FnOnce(&mut [u8]) -> io::Result<usize>) -> io::Result<Fill> {
        self.make_room();
        match read(&mut self.buf[self.end..]) {
            Ok(0) => Ok(Fill::Eof),
            Ok(n) => {
                self.end += n;
                Ok(Fill::Data)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Fill::WouldBlock),
            Err(e) => Err(e),
        }
    }

    /// Reads what the ring has, never waiting.
    pub fn fill_ring(&mut self, ring: &crate::pool::transport::ring::Ring<'_>) -> io::Result<Fill> {
        self.make_room();
        match ring.read(&mut self.buf[self.end..])? {
            0 => Ok(Fill::WouldBlock),
            n => {
                self.end += n;
                Ok(Fill::Data)
            }
        }
    }

    /// Compacts or grows the buffer so that a read has room.
    fn make_room(&mut self) {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.buf.len() - self.end < 4096 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end == self.buf.len() {
            // A frame larger than the buffer, or a reader made by `default`.
            self.buf.resize((self.buf.len() * 2).max(64 << 10), 0);
        }
    }

    /// The next frame, waiting as long as it takes; `UnexpectedEof` at end of stream.
    #[cfg(test)]
    pub fn recv<T: for<'de> Deserialize<'de>>(&mut self, fd: impl rustix::fd::AsFd) -> io::Result<T> {
        loop {
            if let Some(msg) = self.next() {
                return msg;
            }
            if self.fill(&fd, true)? == Fill::Eof {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// `#[serde(with)]` for encoded items: a byte string (`serialize_bytes`:
/// a length, then one copy), not a sequence of `u8` that serde would
/// visit byte by byte: the same bytes on the wire, a memcpy instead of a
/// loop (a 200 KB argument was 1 s of encoding in a debug build).
pub(crate) mod bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer, B: AsRef<[u8]>>(v: &B, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v.as_ref())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, B: From<Vec<u8>>>(d: D) -> Result<B, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Visit).map(B::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut buf = Vec::new();
        send(&mut buf, &ToHelper::Run { job: 7, task: 2, count: 1, args: Cow::Owned(vec![1, 2, 3]) }).unwrap();
        send(&mut buf, &ToHelper::Exit).unwrap();
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(&buf).unwrap();
        drop(a);
        let mut r = FrameReader::new();
        assert!(matches!(r.recv(&b).unwrap(), ToHelper::Run { job: 7, task: 2, .. }));
        assert!(matches!(r.recv(&b).unwrap(), ToHelper::Exit));
        assert_eq!(r.recv::<ToHelper>(&b).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn frame_reader_splits_coalesced_frames_and_waits_for_partial_ones() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut two = frame(&FromHelper::Ready { protocol: PROTOCOL, tasks: vec!["x".into()], pid: 1 }).unwrap();
        two.extend(frame(&ToHelper::Exit).unwrap());
        let third = frame(&ToHelper::Exit).unwrap();
        two.extend_from_slice(&third[..2]);
        a.write_all(&two).unwrap();
        let mut r = FrameReader::new();
        assert_eq!(r.fill(&b, false).unwrap(), Fill::Data);
        assert!(matches!(r.next::<FromHelper>(), Some(Ok(FromHelper::Ready { .. }))));
        assert!(matches!(r.next::<ToHelper>(), Some(Ok(ToHelper::Exit))));
        assert!(r.next::<ToHelper>().is_none(), "half a frame is not a frame");
        assert_eq!(r.fill(&b, false).unwrap(), Fill::WouldBlock);
        a.write_all(&third[2..]).unwrap();
        drop(a);
        assert!(matches!(r.recv::<ToHelper>(&b), Ok(ToHelper::Exit)));
        assert_eq!(r.recv::<ToHelper>(&b).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn an_oversized_message_is_refused_before_it_is_sent() {
        let big = vec![0u8; MAX_FRAME];
        let mut out = vec![9u8; 3];
        let e =
            frame_into(&mut out, &ToHelper::Run { job: 1, task: 0, count: 1, args: Cow::Borrowed(&big) }).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("SharedArray"), "{e}");
        assert_eq!(out, [9, 9, 9], "a refused frame leaves the buffer as it was");
        assert!(!fits(big.len()));
        assert!(fits(100));
    }

    #[test]
    fn the_guards_not_initialized_frame_is_the_messages() {
        assert_eq!(frame(&FromHelper::NotInitialized).unwrap(), crate::role::NOT_INITIALIZED_FRAME);
    }

    #[test]
    fn oversized_length_prefix_is_invalid_data() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(&[0xff, 0xff, 0xff, 0x7f, 0]).unwrap();
        let mut r = FrameReader::new();
        assert_eq!(r.recv::<ToHelper>(&b).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    /// One frame of each message, as the fuzzer's seeds (`fuzz/seeds/pool_wire`).
    fn seed_frames() -> Vec<(&'static str, Vec<u8>)> {
        let run =
            ToHelper::Run { job: 7, task: 2, count: 2, args: Cow::Owned([3u64, 4].map(u64::to_le_bytes).concat()) };
        let mut results = Items { data: 9u64.to_le_bytes().to_vec(), count: 3, failures: Vec::new() };
        results.fail(1, Failure::Panic("boom at src/main.rs:3".into()));
        results.fail(2, Failure::Error(vec!["outer".into(), "inner".into()]));
        let mut two = frame(&run).unwrap();
        two.extend(frame(&ToHelper::Exit).unwrap());
        let claim = ClaimRef { table: 1, pass: 9, chunks: 12, claimer: 1 };
        let claim = ToHelper::Claim { job: 9, task: 2, claim, args: Cow::Owned(vec![4, b'n', b'a', b'm', b'e']) };
        vec![
            ("run", frame(&run).unwrap()),
            ("exit", frame(&ToHelper::Exit).unwrap()),
            ("claim", frame(&claim).unwrap()),
            ("two", two),
            (
                "ready",
                frame(&FromHelper::Ready { protocol: PROTOCOL, tasks: vec!["sq".into(), "add".into()], pid: 42 })
                    .unwrap(),
            ),
            ("done", frame(&FromHelper::Done { job: 7, results }).unwrap()),
            ("skipped", frame(&FromHelper::Skipped { job: 8 }).unwrap()),
            ("notinit", frame(&FromHelper::NotInitialized).unwrap()),
            ("wrongtest", frame(&FromHelper::WrongTest { test: "other".into() }).unwrap()),
        ]
    }

    /// The fuzzer starts from these seeds; a seed of an older protocol
    /// would only teach it the decoder's error paths.
    /// `SHMKIT_WRITE_FUZZ_SEEDS=1 cargo test seeds` rewrites them.
    #[test]
    fn the_fuzzers_seeds_are_frames_of_this_protocol() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/pool_wire");
        if std::env::var_os("SHMKIT_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::read_dir(&dir).unwrap().flatten().for_each(|e| std::fs::remove_file(e.path()).unwrap());
            seed_frames().iter().for_each(|(name, bytes)| std::fs::write(dir.join(name), bytes).unwrap());
        }
        let mut on_disk: Vec<String> =
            std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        on_disk.sort();
        let mut want: Vec<String> = seed_frames().iter().map(|(n, _)| n.to_string()).collect();
        want.sort();
        assert_eq!(on_disk, want, "rewrite the seeds: SHMKIT_WRITE_FUZZ_SEEDS=1 cargo test seeds");
        for (name, bytes) in seed_frames() {
            assert_eq!(
                std::fs::read(dir.join(name)).unwrap(),
                bytes,
                "seed {name} is stale: SHMKIT_WRITE_FUZZ_SEEDS=1 cargo test seeds"
            );
        }
    }
}
