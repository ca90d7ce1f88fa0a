//! The same work three ways, in one run, on this machine: shmkit helpers,
//! in-process threads (rayon) over the same array, and Python's
//! `multiprocessing` + `shared_memory` + numpy (`benches/compare.py`).
//!
//! ```text
//! cargo bench --bench compare            # about 3 minutes on 2 cores
//! cargo bench --bench compare -- --quick # smaller sizes, for development
//! ```
//!
//! Prints a table with ratios; writes `target/bench/compare.{json,md,svg}`.

mod measure;
mod python;
mod report;

use std::time::Duration;

use anyhow::Result;

/// Sizes of one run.
pub struct Sizes {
    pub elements: usize,
    pub tiny: usize,
    pub latency: usize,
    pub reps: usize,
    pub helpers: usize,
}

/// Per-repetition values of one workload, one way.
pub type Samples = Vec<f64>;

fn main() -> Result<()> {
    shmkit::init(measure::tasks);
    let quick = std::env::args().any(|a| a == "--quick");
    let helpers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sizes = match quick {
        true => Sizes { elements: 1 << 24, tiny: 20_000, latency: 1000, reps: 5, helpers },
        false => Sizes { elements: 1 << 27, tiny: 200_000, latency: 5000, reps: 5, helpers },
    };
    let mib = (sizes.elements * 8) >> 20;
    eprintln!("compare: {mib} MiB array, {} helpers / threads, {} repetitions after a warm-up", helpers, sizes.reps);
    eprintln!("compare: shmkit ...");
    let shmkit = measure::shmkit(&sizes)?;
    eprintln!("compare: threads (rayon) ...");
    let threads = measure::threads(&sizes)?;
    eprintln!("compare: python multiprocessing + numpy ...");
    let python = python::run(&sizes, Duration::from_secs(600));
    if let Err(why) = &python {
        eprintln!("compare: no Python column: {why}");
    }
    report::write(&sizes, &shmkit, &threads, python.as_ref().ok())
}
