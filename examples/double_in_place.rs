//! Doubles a 1 GiB shared array in place with one helper process per core.
//!
//! The coordinator creates a named f64 array and starts a pool; helpers
//! are new processes running this same executable (never a `fork` of the
//! running one). Each attaches to the array by name alone and doubles its
//! chunk of rows in place; nothing is copied. The coordinator checks every
//! element and reports the rate as 2 × bytes / time (each element is read
//! once and written once).
//!
//! ```text
//! cargo run --release --example double_in_place [-- --elements N --helpers K --rounds R]
//! ```

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use ndarray::{ArrayViewMut1, Ix1};
use shmkit::{Pool, SharedArray};

/// The task: runs in a helper, on its rows of the shared array.
fn double(mut rows: ArrayViewMut1<f64>) {
    rows.mapv_inplace(|x| 2.0 * x);
}

fn tasks(r: &mut shmkit::Registry) {
    r.add(double);
}

fn main() -> Result<()> {
    shmkit::init(tasks); // in a helper: serves tasks here, then exits

    let args: Vec<String> = std::env::args().skip(1).collect();
    let elements = flag(&args, "--elements")?.unwrap_or(1 << 27);
    let rounds = flag(&args, "--rounds")?.unwrap_or(3).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let helpers = flag(&args, "--helpers")?.unwrap_or(cores).max(1);

    let start = Instant::now();
    let mut array = SharedArray::<f64, Ix1>::create_unique(elements)?;
    let bytes = elements * size_of::<f64>();
    let (gib, ms) = (bytes as f64 / (1u64 << 30) as f64, start.elapsed().as_secs_f64() * 1e3);
    println!("created '{}': {elements} f64 ({gib:.2} GiB, pages reserved and mapped) in {ms:.1} ms", array.name());
    array.as_slice_mut()?.iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);

    let start = Instant::now();
    let pool = Pool::builder().tasks(tasks).helpers(helpers).build()?;
    println!("pool of {helpers} helper processes ready in {:.1} ms", start.elapsed().as_secs_f64() * 1e3);

    for round in 1..=rounds {
        let start = Instant::now();
        pool.for_each_chunk_mut(&mut array, double)?;
        let secs = start.elapsed().as_secs_f64();
        let note = if round == 1 { " (first touch: helpers map the pages)" } else { "" };
        println!("round {round}: {:.1} ms, {:.2} GB/s{note}", secs * 1e3, 2.0 * bytes as f64 / secs / 1e9);
    }

    let factor = 2f64.powi(rounds as i32);
    let wrong = array.as_slice()?.iter().enumerate().filter(|&(i, &x)| x != factor * i as f64).count();
    ensure!(wrong == 0, "{wrong} of {elements} elements are wrong");
    println!("verified: all {elements} elements doubled in place {rounds} times");
    Ok(()) // the pool stops its helpers, then `array` unlinks the segment
}

/// The number after `name` in `args`, if present.
fn flag(args: &[String], name: &str) -> Result<Option<usize>> {
    let Some(i) = args.iter().position(|a| a == name) else { return Ok(None) };
    let value = args.get(i + 1).with_context(|| format!("{name} needs a value"))?;
    Ok(Some(value.parse().with_context(|| format!("{name} {value}: not a number"))?))
}
