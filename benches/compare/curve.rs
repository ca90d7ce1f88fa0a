//! The fixed cost of an in-place pass: `for_each_chunk_mut` doubling an
//! array against rayon doubling a `Vec` of the same size, from 1 MiB to
//! 1 GiB, passes interleaved, medians.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;
use ndarray::Ix1;
use rayon::prelude::*;
use shmkit::{Pool, SharedArray};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The table, as Markdown rows after a header.
pub fn run(pool: &Pool, threads: &rayon::ThreadPool, quick: bool) -> Result<String> {
    let sizes: &[usize] = if quick { &[1, 4, 16, 64] } else { &[1, 4, 16, 64, 256, 1024] };
    let mut md = String::from(
        "| array | passes | shmkit `for_each_chunk_mut` | rayon over a `Vec` | shmkit / rayon |\n|---|---|---|---|---|\n",
    );
    for &mib in sizes {
        let n = mib << 17; // f64 elements
        let passes = match mib {
            0..=16 => 200,
            17..=64 => 50,
            65..=256 => 20,
            _ => 10,
        };
        let mut a = SharedArray::<f64, Ix1>::create_unique(n)?;
        let mut v = vec![1.0f64; n];
        let (mut shm, mut thr) = (Vec::new(), Vec::new());
        pool.for_each_chunk_mut(&mut a, super::measure::double)?; // warm: helpers map it
        for _ in 0..passes {
            let t = Instant::now();
            pool.for_each_chunk_mut(&mut a, super::measure::double)?;
            shm.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            threads.install(|| v.par_iter_mut().for_each(|x| *x *= 2.0));
            thr.push(t.elapsed().as_secs_f64());
        }
        let (s, r) = (median(shm), median(thr));
        let us = |t: f64| if t < 0.01 { format!("{:.0} µs", t * 1e6) } else { format!("{:.1} ms", t * 1e3) };
        let size = if mib >= 1024 { format!("{} GiB", mib >> 10) } else { format!("{mib} MiB") };
        writeln!(md, "| {size} | {passes} | {} | {} | {:.2}× |", us(s), us(r), s / r)?;
    }
    Ok(md)
}
