//! Array streams side by side, in one run: shmkit's `stream`, iceoryx2
//! 0.10 (its slice API, `[u8]` samples) and Python's
//! `multiprocessing.Queue` of numpy frames (with the shmkit Python
//! package's streams beside it), all with 4 MiB frames between separate
//! processes.
//!
//! ```text
//! cargo bench -p shmkit-bench-stream --bench stream            # about 3 minutes
//! cargo bench -p shmkit-bench-stream --bench stream -- --quick # for development
//! ```
//!
//! - **Publish → seen**: the publisher writes a whole frame, reads the
//!   clock (`CLOCK_MONOTONIC`, the same in every process), stamps it into
//!   the frame and publishes; the subscriber, in a process of its own,
//!   reads the clock when the frame is in its hands. Once with the
//!   subscriber busy-polling, once with it asleep between frames (frames
//!   far enough apart that it has stopped spinning).
//! - **Throughput** to 2 subscribers: the publisher writes every byte of
//!   each frame once, the subscribers check its number at both ends; no
//!   frame is lost (back-pressure on every side). Beside it, the same
//!   writes into 2 and into 8 buffers in turn, in one process: the
//!   machine's bounds for this work, with frames reused while they are in
//!   the caches and with frames going through memory.
//!
//! Each round measures every row once, the Rust sides in alternating
//! order; writes `target/bench/stream.{json,md}` and, unless `--quick`,
//! its section of `benches/README.md`.

mod futex;
mod iox;
mod peer;
mod python;
mod report;
mod shm;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Bytes of one frame.
pub const FRAME: usize = 4 << 20;

/// How a subscriber waits for the next frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Polls without a pause.
    Busy,
    /// Sleeps in the library's blocking call.
    Sleep,
}

impl Wait {
    /// The word used in arguments and keys.
    pub fn word(self) -> &'static str {
        match self {
            Wait::Busy => "busy",
            Wait::Sleep => "sleep",
        }
    }

    fn parse(s: &str) -> Result<Wait> {
        match s {
            "busy" => Ok(Wait::Busy),
            "sleep" => Ok(Wait::Sleep),
            _ => bail!("a wait is busy or sleep, not {s:?}"),
        }
    }

    /// Time between frames: a sleeping subscriber must have stopped spinning.
    pub fn period(self) -> Duration {
        match self {
            Wait::Busy => Duration::from_millis(1),
            Wait::Sleep => Duration::from_millis(3),
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process
/// (and Python's `time.monotonic_ns`).
pub fn now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Writes a whole frame once: every byte, then `mark` at both ends.
pub fn write_frame(frame: &mut [u8], mark: u64) {
    frame.fill(mark as u8);
    mark_frame(frame, mark);
}

/// Writes `mark` at a frame's two ends.
pub fn mark_frame(frame: &mut [u8], mark: u64) {
    let n = frame.len();
    frame[..8].copy_from_slice(&mark.to_le_bytes());
    frame[n - 8..].copy_from_slice(&mark.to_le_bytes());
}

/// The marks at a frame's two ends (equal if it is whole).
pub fn marks(frame: &[u8]) -> (u64, u64) {
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    (word(&frame[..8]), word(&frame[frame.len() - 8..]))
}

/// Sizes of one run.
pub struct Sizes {
    pub rounds: usize,
    /// Frames per latency measurement.
    pub frames: usize,
    /// Frames per throughput measurement.
    pub bulk: usize,
    /// Frames per Python measurement (its queue is slow).
    pub python_frames: usize,
}

/// Samples per key: latencies in µs, or frames per second.
pub type Samples = HashMap<String, Vec<f64>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--role") {
        return role(&args[i + 1..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let sizes = match quick {
        true => Sizes { rounds: 2, frames: 300, bulk: 100, python_frames: 60 },
        false => Sizes { rounds: 5, frames: 1000, bulk: 400, python_frames: 200 },
    };
    // A hung peer must not hang the bench: the children die with it.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(10 * 60));
        eprintln!("stream bench: still running after 10 minutes; giving up");
        std::process::exit(2);
    });
    let python = shmkit_bench::Python::find()?;
    let before = iceoryx_files();
    eprintln!("stream: {} MiB frames, {} rounds; {}", FRAME >> 20, sizes.rounds, python.version);
    let (mut latency, mut throughput) = (Samples::new(), Samples::new());
    for round in 0..sizes.rounds {
        let start = Instant::now();
        one_round(round, &sizes, &python, &mut latency, &mut throughput)?;
        eprintln!("round {} of {} in {:.1} s", round + 1, sizes.rounds, start.elapsed().as_secs_f64());
    }
    // iceoryx2 keeps a global management file in /dev/shm after its last
    // node is gone: the bench removes what it brought.
    for file in iceoryx_files().difference(&before) {
        let _ = std::fs::remove_file(std::path::Path::new("/dev/shm").join(file));
    }
    let report = report::Report { latency, throughput, python: python.version.clone(), sizes };
    report.write(quick)
}

/// Every row once; the Rust sides in alternating order.
fn one_round(round: usize, s: &Sizes, py: &shmkit_bench::Python, lat: &mut Samples, tput: &mut Samples) -> Result<()> {
    let tag = format!("{}-{round}", std::process::id());
    let sides: [&str; 2] = if round.is_multiple_of(2) { ["shmkit", "iceoryx2"] } else { ["iceoryx2", "shmkit"] };
    for wait in [Wait::Busy, Wait::Sleep] {
        for side in sides {
            let name = format!("shmkit-bench-stream-{tag}-{}", wait.word());
            let got = match side {
                "shmkit" => shm::latency(&name, wait, s.frames)?,
                _ => iox::latency(&name, wait, s.frames)?,
            };
            lat.entry(format!("{side}/{}", wait.word())).or_default().extend(got);
        }
    }
    let floor = futex::latency(&format!("shmkit-bench-stream-{tag}-futex"), s.frames)?;
    lat.entry("futex/sleep".to_owned()).or_default().extend(floor);
    let bounds = [2, 8].map(|n| memory_baseline(s.bulk, n));
    for side in sides {
        let name = format!("shmkit-bench-stream-{tag}-bulk");
        let fps = match side {
            "shmkit" => shm::throughput(&name, s.bulk)?,
            _ => iox::throughput(&name, s.bulk)?,
        };
        tput.entry(side.to_owned()).or_default().push(fps);
    }
    // The better of two, before and after: the bound, not a noisy moment.
    for (n, before) in [2, 8].into_iter().zip(bounds) {
        tput.entry(format!("memory{n}")).or_default().push(before.max(memory_baseline(s.bulk, n)));
    }
    let (py_lat, py_tput) = python::round(py, s)?;
    for (k, v) in py_lat {
        lat.entry(k).or_default().extend(v);
    }
    for (k, v) in py_tput {
        tput.entry(k).or_default().extend(v);
    }
    Ok(())
}

/// Frames per second when one process writes `frames` frames into
/// `buffers` buffers in turn: the bound a stream of frames written once
/// can reach when it reuses that many slots (2 stay in the caches, 8
/// frames of 4 MiB go through memory).
fn memory_baseline(frames: usize, buffers: usize) -> f64 {
    let mut slots: Vec<Vec<u8>> = (0..buffers).map(|_| vec![1u8; FRAME]).collect();
    let start = Instant::now();
    for i in 0..frames {
        write_frame(&mut slots[i % buffers], i as u64);
    }
    let fps = frames as f64 / start.elapsed().as_secs_f64();
    std::hint::black_box(&slots);
    fps
}

/// iceoryx2's files in /dev/shm.
fn iceoryx_files() -> std::collections::BTreeSet<String> {
    let dir = std::fs::read_dir("/dev/shm").into_iter().flatten().flatten();
    dir.filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with("iox2_")).collect()
}

/// A child process's part: `--role SIDE KIND NAME WAIT FRAMES`.
fn role(args: &[String]) -> Result<()> {
    peer::die_with_parent();
    let [side, kind, name, wait, frames] = args else { bail!("--role SIDE KIND NAME WAIT FRAMES, not {args:?}") };
    let (wait, frames) = (Wait::parse(wait)?, frames.parse()?);
    match (side.as_str(), kind.as_str()) {
        ("shmkit", "latency") => shm::subscribe_latency(name, wait, frames),
        ("shmkit", "bulk") => shm::subscribe_bulk(name, frames),
        ("iceoryx2", "latency") => iox::subscribe_latency(name, wait, frames),
        ("iceoryx2", "bulk") => iox::subscribe_bulk(name, frames),
        ("futex", "latency") => futex::wait_latency(name, frames),
        _ => bail!("no role {side} {kind}"),
    }
}
