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
use shmkit::{Pool, SharedArray};

use crate::{Samples, Sizes};

/// Samples per workload key, for one side.
pub type Figures = HashMap<&'static str, Samples>;

fn double(mut rows: ArrayViewMut1<f64>) {
    match rows.as_slice_mut() {
        Some(s) => s.iter_mut().for_each(|x| *x *= 2.0),
        None => rows.iter_mut().for_each(|x| *x *= 2.0),
    }
}

fn square(x: u64) -> u64 {
    x * x
}

pub fn tasks(r: &mut shmkit::Registry) {
    r.add(double).add(square);
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

fn check(results: Vec<Result<u64, shmkit::TaskError>>) -> Result<()> {
    ensure!(results.iter().all(Result::is_ok), "a tiny task failed");
    Ok(())
}

fn push(out: &mut Figures, key: &'static str, value: f64) {
    out.entry(key).or_default().push(value);
}

/// Both sides' machinery, over one shared array.
pub struct Rig<'s> {
    s: &'s Sizes,
    pool: Pool,
    threads: rayon::ThreadPool,
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

    fn shmkit(&mut self, out: &mut Figures) -> Result<()> {
        let (s, pool) = (self.s, &self.pool);
        let mem = MemorySampler::start(pool.helper_pids());
        push(out, "double_s", time(|| pool.for_each_chunk_mut(&mut self.a, double))?.0);
        push(out, "double_extra_bytes", mem.finish());
        push(out, "sum_s", time(|| pool.sum(&self.a))?.0);
        push(out, "tiny_1_s", time(|| check(pool.map_chunked(square, 0..s.tiny as u64, 1)))?.0);
        push(out, "tiny_1000_s", time(|| check(pool.map_chunked(square, 0..s.tiny as u64, 1000)))?.0);
        let (median, p99) = latency(s.latency, || pool.submit(square, 3).wait())?;
        push(out, "latency_median_s", median);
        push(out, "latency_p99_s", p99);
        push(out, "pool_ready_s", time(|| Pool::builder().tasks(tasks).helpers(s.helpers).build())?.0); // drop untimed
        push(out, "attach_s", time(|| SharedArray::<f64, Ix1>::open(self.a.name()))?.0);
        Ok(())
    }

    fn rayon(&mut self, out: &mut Figures) -> Result<()> {
        let (s, tp) = (self.s, &self.threads);
        let mem = MemorySampler::start(Vec::new()); // no helpers: only this process's growth
        let a = &mut self.a;
        let double = || -> Result<()> {
            tp.install(|| a.as_slice_mut().map(|mut s| s.par_iter_mut().for_each(|x| *x *= 2.0)))?;
            Ok(())
        };
        push(out, "double_s", time(double)?.0);
        push(out, "double_extra_bytes", mem.finish());
        let a = &self.a;
        push(
            out,
            "sum_s",
            time(|| a.as_slice().map(|s| tp.install(|| s.par_chunks(1 << 16).map(sum8).sum::<f64>())))?.0,
        );
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
        push(out, "pool_ready_s", time(ready)?.0);
        Ok(())
    }
}
