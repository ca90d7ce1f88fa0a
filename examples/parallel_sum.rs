//! Sums a 1 GiB shared f64 array across helper processes.
//!
//! Helpers fill the array in place (each writes its rows, knowing where
//! they start), then `pool.sum` reduces it: each helper sums its chunks
//! and only one f64 per chunk comes back. The result is checked against
//! the closed form, and against a sum in this process.
//!
//! ```text
//! cargo run --release --example parallel_sum [-- --elements N]
//! ```

use std::time::Instant;

use anyhow::{ensure, Result};
use ndarray::{ArrayViewMut1, Ix1};
use shmkit::{Pool, SharedArray};

/// Writes `i` at global index `i`: the task is told where its rows start.
fn fill_index(start: usize, mut rows: ArrayViewMut1<f64>) {
    rows.iter_mut().enumerate().for_each(|(i, x)| *x = (start + i) as f64);
}

fn tasks(r: &mut shmkit::Registry) {
    r.add(fill_index);
}

fn main() -> Result<()> {
    shmkit::init(tasks);
    let elements: usize = match std::env::args().skip_while(|a| a != "--elements").nth(1) {
        Some(n) => n.parse()?,
        None => 1 << 27,
    };
    let pool = Pool::new(tasks)?;
    let mut array = SharedArray::<f64, Ix1>::create_unique(elements)?;
    let gb = (elements * 8) as f64 / 1e9;

    let start = Instant::now();
    pool.for_each_chunk_mut(&mut array, fill_index)?;
    println!("filled {elements} f64 in {} helpers: {:.1} ms", pool.helpers(), start.elapsed().as_secs_f64() * 1e3);

    for round in 1..=3 {
        let start = Instant::now();
        let sum = pool.sum(&array)?;
        let secs = start.elapsed().as_secs_f64();
        println!("round {round}: sum = {sum:e} in {:.1} ms, {:.2} GB/s", secs * 1e3, gb / secs);
        let n = elements as f64;
        ensure!(sum == n * (n - 1.0) / 2.0, "sum {sum} differs from n(n-1)/2");
    }
    let start = Instant::now();
    let here: f64 = array.as_slice()?.iter().sum();
    println!("one thread in this process: {:.1} ms (plain sequential loop)", start.elapsed().as_secs_f64() * 1e3);
    ensure!(here == pool.sum(&array)?, "helpers and this process disagree");
    println!("verified: helpers' sum equals n(n-1)/2 and this process's sum");
    Ok(())
}
