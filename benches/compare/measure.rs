//! Timing shmkit and rayon over the same array.

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

/// Runs `f` once to warm up, then `reps` times; seconds per run.
fn timed<T, E: Into<anyhow::Error>>(reps: usize, mut f: impl FnMut() -> Result<T, E>) -> Result<Samples> {
    black_box(f().map_err(Into::into)?);
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            black_box(f().map_err(Into::into)?);
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

/// Per-repetition median and 99th percentile of `calls` round trips.
fn latency<T, E: Into<anyhow::Error>>(
    reps: usize,
    calls: usize,
    mut once: impl FnMut() -> Result<T, E>,
) -> Result<(Samples, Samples)> {
    let (mut medians, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..=reps {
        let mut t: Vec<f64> = Vec::with_capacity(calls);
        for _ in 0..calls {
            let start = Instant::now();
            black_box(once().map_err(Into::into)?);
            t.push(start.elapsed().as_secs_f64());
        }
        t.sort_by(f64::total_cmp);
        medians.push(t[calls / 2]);
        p99s.push(t[calls * 99 / 100]);
    }
    Ok((medians[1..].to_vec(), p99s[1..].to_vec())) // the first round warms up
}

/// Peak of the summed `RssAnon` of `pids` while a closure runs: memory
/// beyond the shared array, which is shmem, not anonymous.
struct MemorySampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl MemorySampler {
    fn start(pids: Vec<u32>) -> MemorySampler {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(pids.iter().map(|&pid| rss_anon(pid)).sum(), Ordering::Relaxed);
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

fn filled(n: usize) -> Result<SharedArray<f64, Ix1>> {
    let mut a = SharedArray::<f64, Ix1>::create_unique(n)?;
    a.as_slice_mut().par_iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
    Ok(a)
}

/// Sum with eight independent accumulators, as shmkit's built-in does.
fn sum8(v: &[f64]) -> f64 {
    let mut lanes = [0.0; 8];
    let chunks = v.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().sum();
    chunks.for_each(|c| lanes.iter_mut().zip(c).for_each(|(l, x)| *l += x));
    lanes.iter().sum::<f64>() + tail
}

pub fn shmkit(s: &Sizes) -> Result<HashMap<&'static str, Samples>> {
    let mut out = HashMap::new();
    let pool = Pool::builder().tasks(tasks).helpers(s.helpers).build()?;
    let mut a = filled(s.elements)?;
    let mut pids = pool.helper_pids();
    pids.push(std::process::id());
    let mem = MemorySampler::start(pids);
    out.insert("double_s", timed(s.reps, || pool.for_each_chunk_mut(&mut a, double))?);
    out.insert("double_extra_bytes", vec![mem.finish()]);
    out.insert("sum_s", timed(s.reps, || pool.sum(&a))?);
    for (key, cs) in [("tiny_1_s", 1), ("tiny_1000_s", 1000)] {
        out.insert(key, timed(s.reps, || check(pool.map_chunked(square, 0..s.tiny as u64, cs)))?);
    }
    let (median, p99) = latency(s.reps, s.latency, || pool.submit(square, 3).wait())?;
    out.insert("latency_median_s", median);
    out.insert("latency_p99_s", p99);
    let mut pools = Vec::new(); // dropped after timing: shutting down is not starting
    let start = || -> Result<()> {
        pools.push(Pool::builder().tasks(tasks).helpers(s.helpers).build()?);
        Ok(())
    };
    out.insert("pool_ready_s", timed(s.reps, start)?);
    drop(pools);
    out.insert("attach_s", timed(s.reps, || SharedArray::<f64, Ix1>::open(a.name()))?);
    Ok(out)
}

fn check(results: Vec<Result<u64, shmkit::TaskError>>) -> Result<()> {
    ensure!(results.iter().all(Result::is_ok), "a tiny task failed");
    Ok(())
}

pub fn threads(s: &Sizes) -> Result<HashMap<&'static str, Samples>> {
    let mut out = HashMap::new();
    let tp = rayon::ThreadPoolBuilder::new().num_threads(s.helpers).build()?;
    let mut a = filled(s.elements)?;
    let mem = MemorySampler::start(vec![std::process::id()]);
    let double = || -> Result<()> {
        tp.install(|| a.as_slice_mut().par_iter_mut().for_each(|x| *x *= 2.0));
        Ok(())
    };
    out.insert("double_s", timed(s.reps, double)?);
    out.insert("double_extra_bytes", vec![mem.finish()]);
    let sum = || tp.install(|| a.as_slice().par_chunks(1 << 16).map(sum8).sum::<f64>());
    out.insert("sum_s", timed(s.reps, || anyhow::Ok(sum()))?);
    for (key, cs) in [("tiny_1_s", 1), ("tiny_1000_s", 1000)] {
        let run = || {
            tp.install(|| (0..s.tiny).into_par_iter().with_min_len(cs).map(|x| square(x as u64)).collect::<Vec<_>>())
        };
        out.insert(key, timed(s.reps, || anyhow::Ok(run()))?);
    }
    let (median, p99) = latency(s.reps, s.latency, || {
        let (tx, rx) = std::sync::mpsc::channel();
        tp.spawn(move || {
            let _ = tx.send(square(3));
        });
        rx.recv()
    })?;
    out.insert("latency_median_s", median);
    out.insert("latency_p99_s", p99);
    let mut pools = Vec::new();
    let ready = || -> Result<()> {
        let tp = rayon::ThreadPoolBuilder::new().num_threads(s.helpers).build()?;
        tp.broadcast(|_| ()); // every thread has run
        pools.push(tp);
        Ok(())
    };
    out.insert("pool_ready_s", timed(s.reps, ready)?);
    Ok(out)
}
