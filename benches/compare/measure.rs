//! Timing shmkit and rayon over the same array, interleaved: each round
//! runs every workload on both sides, in alternating order, so that drift
//! in the machine (a shared VM's memory bandwidth moves from minute to
//! minute) hits both columns alike.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use ndarray::{ArrayViewMut1, Ix1};
use rayon::prelude::*;
use shmkit::collections::{FixedStr, ShmMap, ShmVec};
use shmkit::{Pool, SharedArray};

use crate::{Samples, Sizes};

/// Samples per workload key, for one side.
pub type Figures = HashMap<&'static str, Samples>;

pub fn double(mut rows: ArrayViewMut1<f64>) {
    match rows.as_slice_mut() {
        Some(s) => s.iter_mut().for_each(|x| *x *= 2.0),
        None => rows.iter_mut().for_each(|x| *x *= 2.0),
    }
}

fn square(x: u64) -> u64 {
    x * x
}

/// The seed's Manager worker, for keys `lo..hi`: `d[k] = 2k` and
/// `l.append(f"processed_{k}")`, into a shared map and list opened by name
/// once per task (Python's proxies connect once per worker too).
fn manager((map, list, lo, hi): (String, String, u64, u64)) -> anyhow::Result<u64> {
    let (d, l) = (ShmMap::<u64, u64>::open(&map)?, ShmVec::<Text>::open(&list)?);
    for k in lo..hi {
        d.insert(k, 2 * k)?;
        l.push(Text::format(format_args!("processed_{k}"))?)?;
    }
    Ok(hi - lo)
}

/// The list's element: the seed appends short strings.
type Text = FixedStr<24>;

pub fn tasks(r: &mut shmkit::Registry) {
    r.add(double).add(square).add(manager);
}

/// Seconds `f` takes, and what it returned (dropped by the caller, untimed).
fn time<T, E: Into<anyhow::Error>>(f: impl FnOnce() -> Result<T, E>) -> Result<(f64, T)> {
    let t = Instant::now();
    let v = black_box(f().map_err(Into::into)?);
    Ok((t.elapsed().as_secs_f64(), v))
}

/// Median and 99th percentile of `calls` round trips.
fn latency<T, E: Into<anyhow::Error>>(calls: usize, mut once: impl FnMut() -> Result<T, E>) -> Result<(f64, f64)> {
    let mut t: Vec<f64> = (0..calls).map(|_| time(&mut once).map(|(s, _)| s)).collect::<Result<_>>()?;
    t.sort_by(f64::total_cmp);
    Ok((t[calls / 2], t[calls * 99 / 100]))
}

/// Peak memory beyond the shared array while it runs: the whole
/// anonymous memory (`RssAnon`; the array is shmem, not counted) of the
/// helper processes, plus what this process gains over its level at
/// start. The same rule is applied to Python's parent and workers.
struct MemorySampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl MemorySampler {
    fn start(helpers: Vec<u32>) -> MemorySampler {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let me = std::process::id();
        let base = rss_anon(me);
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let total = rss_anon(me).saturating_sub(base) + helpers.iter().map(|&pid| rss_anon(pid)).sum::<u64>();
                p.fetch_max(total, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        MemorySampler { stop, peak, thread }
    }

    fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed) as f64
    }
}

fn rss_anon(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("RssAnon:"));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).unwrap_or(0) * 1024
}

/// Sum with eight independent accumulators, as shmkit's built-in does.
fn sum8(v: &[f64]) -> f64 {
    let mut lanes = [0.0; 8];
    let chunks = v.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().sum();
    chunks.for_each(|c| lanes.iter_mut().zip(c).for_each(|(l, x)| *l += x));
    lanes.iter().sum::<f64>() + tail
}

/// A new array of `n` elements, every one written (1.0), as one process
/// would make it: what the Python package's create + fill is held to.
fn create_fill(n: usize) -> Result<SharedArray<f64, Ix1>> {
    let mut a = SharedArray::<f64, Ix1>::create_unique(n)?;
    a.as_slice_mut()?.fill(1.0);
    Ok(a)
}

/// Starts `n` copies of this program with `--exit` (each returns from
/// `main` at once) at the same moment, as a pool starts its helpers, and
/// waits for all: exec, loading and Rust's runtime start, the part of a
/// pool's start that no pool can skip.
fn exec_floor(n: usize) -> Result<()> {
    let exe = std::env::current_exe()?;
    let started: Vec<_> = (0..n).map(|_| std::process::Command::new(&exe).arg("--exit").spawn()).collect();
    // Every child started is waited for before any error is returned.
    let ended: Vec<_> = started.into_iter().map(|c| c.and_then(|mut c| c.wait())).collect();
    for status in ended {
        let status = status?;
        ensure!(status.success(), "this program with --exit: {status}");
    }
    Ok(())
}

fn check(results: Vec<Result<u64, shmkit::pool::TaskError>>) -> Result<()> {
    ensure!(results.iter().all(Result::is_ok), "a tiny task failed");
    Ok(())
}

fn push(out: &mut Figures, key: &'static str, value: f64) {
    out.entry(key).or_default().push(value);
}

/// Both sides' machinery, over one shared array.
pub struct Rig<'s> {
    s: &'s Sizes,
    pub pool: Pool,
    pub threads: rayon::ThreadPool,
    a: SharedArray<f64, Ix1>,
}

impl<'s> Rig<'s> {
    pub fn new(s: &'s Sizes) -> Result<Self> {
        let pool = Pool::builder().tasks(tasks).helpers(s.helpers).build()?;
        let threads = rayon::ThreadPoolBuilder::new().num_threads(s.helpers).build()?;
        let mut a = SharedArray::<f64, Ix1>::create_unique(s.elements)?;
        threads
            .install(|| a.as_slice_mut().map(|mut s| s.par_iter_mut().enumerate().for_each(|(i, x)| *x = i as f64)))?;
        Ok(Rig { s, pool, threads, a })
    }

    /// One run of every workload on both sides, in `first`-side order.
    pub fn round(&mut self, shmkit_first: bool, shm: &mut Figures, thr: &mut Figures) -> Result<()> {
        match shmkit_first {
            true => self.shmkit(shm).and_then(|_| self.rayon(thr)),
            false => self.rayon(thr).and_then(|_| self.shmkit(shm)),
        }
    }

    /// The 1 GiB pass and sum, each timed [`PAIRS`] times per side in
    /// adjacent pairs (see [`pairs`]), each
    /// after a [`QUIET`] pause: side by side within milliseconds, and
    /// neither side's idle threads (rayon's spin before they sleep, a
    /// driver's poll) still running in the other's pass.
    pub fn passes(&mut self, shmkit_first: bool, shm: &mut Figures, thr: &mut Figures) -> Result<()> {
        let (pool, threads, a) = (&self.pool, &self.threads, &mut self.a);
        pairs(shmkit_first, shm, thr, |side, out| {
            push(out, "double_s", double_pass(pool, threads, side, a)?);
            Ok(())
        })?;
        pairs(shmkit_first, shm, thr, |side, out| {
            push(out, "sum_s", sum_pass(pool, threads, side, a)?);
            Ok(())
        })
    }

    /// The 1 GiB pass and sum while another process keeps one core busy
    /// (a noisy neighbour on a shared VM), and the pass over a fresh,
    /// never-touched array (cold: every page is mapped during the pass,
    /// by the helpers or by this process's threads); both sides, in
    /// `first`-side order.
    pub fn noisy_and_cold(&mut self, shmkit_first: bool, shm: &mut Figures, thr: &mut Figures) -> Result<()> {
        for side in order(shmkit_first) {
            let out = if side { &mut *shm } else { &mut *thr };
            let mut fresh = SharedArray::<f64, Ix1>::create_unique(self.s.elements)?;
            std::thread::sleep(QUIET);
            push(out, "double_cold_s", double_pass(&self.pool, &self.threads, side, &mut fresh)?);
            drop(fresh);
            // Idle helpers unmap a dropped array within 100 ms (tens of ms
            // for a populated GiB): not inside the next timed pass.
            std::thread::sleep(UNMAPPED);
        }
        let busy = Busy::start()?;
        let (pool, threads, a) = (&self.pool, &self.threads, &mut self.a);
        pairs(shmkit_first, shm, thr, |side, out| {
            push(out, "double_noisy_s", double_pass(pool, threads, side, a)?);
            std::thread::sleep(QUIET);
            push(out, "sum_noisy_s", sum_pass(pool, threads, side, a)?);
            Ok(())
        })?;
        drop(busy);
        Ok(())
    }

    fn shmkit(&mut self, out: &mut Figures) -> Result<()> {
        let (s, pool) = (self.s, &self.pool);
        // Memory in a pass of its own: the sampler's reads cost CPU, which
        // the timed passes (`passes`) must not pay.
        let mem = MemorySampler::start(pool.helper_pids());
        double_pass(pool, &self.threads, true, &mut self.a)?;
        push(out, "double_extra_bytes", mem.finish());
        push(out, "tiny_1_s", time(|| check(pool.map_chunked(square, 0..s.tiny as u64, 1)))?.0);
        push(out, "tiny_1000_s", time(|| check(pool.map_chunked(square, 0..s.tiny as u64, 1000)))?.0);
        let (median, p99) = latency(s.latency, || pool.submit(square, 3).wait())?;
        push(out, "latency_median_s", median);
        push(out, "latency_p99_s", p99);
        // Both from the same quiet machine: neither warms the other's caches.
        std::thread::sleep(QUIET);
        push(out, "pool_ready_s", time(|| Pool::builder().tasks(tasks).helpers(s.helpers).build())?.0); // drop untimed
        std::thread::sleep(QUIET);
        push(out, "exec_floor_s", time(|| exec_floor(s.helpers))?.0);
        // The median of 21 attaches (each dropped after), as the Python sides measure.
        push(out, "attach_s", latency(21, || SharedArray::<f64, Ix1>::open(self.a.name()))?.0);
        push(out, "create_fill_s", time(|| create_fill(s.elements))?.0); // removed untimed
        push(out, "manager_ops", self.manager_shmkit()?);
        Ok(())
    }

    /// Set + append per key from every helper, one chunk of keys each:
    /// operations per second (a set and an append are two).
    fn manager_shmkit(&self) -> Result<f64> {
        let (n, helpers) = (self.s.manager as u64, self.s.helpers as u64);
        let (d, l) = (ShmMap::<u64, u64>::create_unique(n as usize)?, ShmVec::<Text>::create_unique(n as usize)?);
        let chunks: Vec<_> = (0..helpers)
            .map(|h| (d.name().to_owned(), l.name().to_owned(), n * h / helpers, n * (h + 1) / helpers))
            .collect();
        let (t, done) = time(|| anyhow::Ok(self.pool.map(manager, chunks)))?;
        ensure!(done.into_iter().map(|r| r.unwrap_or(0)).sum::<u64>() == n, "a manager task failed");
        ensure!(d.len() == n as usize && l.len() == n as usize, "entries missing");
        ensure!(d.get(&(n - 1))? == Some(2 * (n - 1)), "a wrong value");
        Ok(2.0 * n as f64 / t)
    }

    fn rayon(&mut self, out: &mut Figures) -> Result<()> {
        let (s, tp) = (self.s, &self.threads);
        let mem = MemorySampler::start(Vec::new()); // no helpers: only this process's growth
        double_pass(&self.pool, tp, false, &mut self.a)?;
        push(out, "double_extra_bytes", mem.finish());
        for (key, cs) in [("tiny_1_s", 1), ("tiny_1000_s", 1000)] {
            let run = || {
                tp.install(|| {
                    (0..s.tiny).into_par_iter().with_min_len(cs).map(|x| square(x as u64)).collect::<Vec<_>>()
                })
            };
            push(out, key, time(|| anyhow::Ok(run()))?.0);
        }
        let (median, p99) = latency(s.latency, || {
            let (tx, rx) = std::sync::mpsc::channel();
            tp.spawn(move || {
                let _ = tx.send(square(3));
            });
            rx.recv()
        })?;
        push(out, "latency_median_s", median);
        push(out, "latency_p99_s", p99);
        let ready = || -> Result<rayon::ThreadPool> {
            let tp = rayon::ThreadPoolBuilder::new().num_threads(s.helpers).build()?;
            tp.broadcast(|_| ()); // every thread has run
            Ok(tp)
        };
        std::thread::sleep(QUIET); // as shmkit's
        push(out, "pool_ready_s", time(ready)?.0);
        push(out, "manager_ops", self.manager_rayon());
        Ok(())
    }

    /// The same set + append from threads, into a `Mutex<HashMap>` and a
    /// `Mutex<Vec>`: the plain in-process way.
    fn manager_rayon(&self) -> f64 {
        use std::collections::HashMap as Map;
        use std::sync::Mutex;
        let n = self.s.manager as u64;
        let (d, l) = (Mutex::new(Map::with_capacity(n as usize)), Mutex::new(Vec::with_capacity(n as usize)));
        let t = Instant::now();
        self.threads.install(|| {
            (0..n).into_par_iter().for_each(|k| {
                d.lock().expect("map").insert(k, 2 * k);
                l.lock().expect("list").push(format!("processed_{k}"));
            })
        });
        let t = t.elapsed().as_secs_f64();
        assert_eq!((d.lock().expect("map").len(), l.lock().expect("list").len()), (n as usize, n as usize));
        2.0 * n as f64 / t
    }
}

/// Timed 1 GiB passes per side and round (and per busy neighbour).
pub const PAIRS: usize = 5;

/// The pause before each timed 1 GiB pass: what ran before has gone
/// quiet (rayon's idle threads yield for a while before they sleep; so
/// does a pool's driver).
pub const QUIET: std::time::Duration = std::time::Duration::from_millis(20);

/// The pause after dropping an array the helpers mapped: idle helpers
/// let it go within 100 ms.
const UNMAPPED: std::time::Duration = std::time::Duration::from_millis(300);

/// Both sides, `true` (shmkit) first or second.
fn order(shmkit_first: bool) -> [bool; 2] {
    [shmkit_first, !shmkit_first]
}

/// Runs `each(side, its figures)` [`PAIRS`] times per side, in adjacent
/// pairs of alternating order (the first pair `shmkit_first`), each after
/// a [`QUIET`] pause.
fn pairs(
    shmkit_first: bool,
    shm: &mut Figures,
    thr: &mut Figures,
    mut each: impl FnMut(bool, &mut Figures) -> Result<()>,
) -> Result<()> {
    for k in 0..PAIRS {
        for side in order(shmkit_first ^ (k % 2 == 1)) {
            std::thread::sleep(QUIET);
            each(side, if side { &mut *shm } else { &mut *thr })?;
        }
    }
    Ok(())
}

/// Seconds to double `a` in place, in the pool's helpers or in threads.
fn double_pass(pool: &Pool, threads: &rayon::ThreadPool, helpers: bool, a: &mut SharedArray<f64, Ix1>) -> Result<f64> {
    match helpers {
        true => Ok(time(|| pool.for_each_chunk_mut(a, double))?.0),
        false => {
            Ok(time(|| a.as_slice_mut().map(|mut s| threads.install(|| s.par_iter_mut().for_each(|x| *x *= 2.0))))?.0)
        }
    }
}

/// Seconds to sum `a`, in the pool's helpers or in threads (eight
/// accumulators per chunk, as shmkit's built-in sum).
fn sum_pass(pool: &Pool, threads: &rayon::ThreadPool, helpers: bool, a: &SharedArray<f64, Ix1>) -> Result<f64> {
    match helpers {
        true => Ok(time(|| pool.sum(a))?.0),
        false => Ok(time(|| a.as_slice().map(|s| threads.install(|| s.par_chunks(1 << 16).map(sum8).sum::<f64>())))?.0),
    }
}

/// Another process keeping one core busy while it lives (this bench
/// started again with `--spin`; it also ends when the bench does).
struct Busy(std::process::Child);

impl Busy {
    fn start() -> Result<Busy> {
        let child = std::process::Command::new(std::env::current_exe()?).arg("--spin").spawn()?;
        std::thread::sleep(std::time::Duration::from_millis(50)); // running before the pass
        Ok(Busy(child))
    }

    /// The busy process's body: spins until its parent is gone.
    pub fn spin() -> ! {
        let parent = std::os::unix::process::parent_id();
        loop {
            let until = Instant::now() + std::time::Duration::from_millis(10);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(0);
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the busy process's body if this is one (`--spin`).
pub fn spin_if_asked() {
    if std::env::args().any(|a| a == "--spin") {
        Busy::spin();
    }
}
