//! The same work three ways, in one run, on this machine: shmkit helpers,
//! in-process threads (rayon) over the same array, and Python's
//! `multiprocessing` + `shared_memory` + numpy (`benches/compare.py`); and
//! the shmkit Python package against `SharedMemory` + numpy,
//! `multiprocessing.Manager` and UltraDict (`benches/compare_python.py`).
//!
//! ```text
//! cargo bench --bench compare            # about 6 minutes on 2 cores
//! cargo bench --bench compare -- --quick # smaller sizes, for development
//! cargo bench --bench compare -- --runs-only # the five-run summary from the kept runs
//! ```
//!
//! After one warm-up round, each repetition runs every workload on the
//! two Rust sides (in alternating order) and then one Python round, so
//! the three columns are measured side by side in time, not minutes
//! apart. Prints a table with ratios; writes `target/bench/compare.{json,md,svg}`
//! and, unless `--quick`, its section of `benches/README.md`, and keeps
//! the run for the summary of the newest five (see `history`).

mod curve;
mod history;
mod measure;
mod python;
mod report;
mod report_pool;

/// The Python side of a run: samples per key, what a killed worker did to
/// each pool, and the interpreter's versions.
pub type PythonRun = (HashMap<String, Samples>, HashMap<String, String>, String);
mod report_python;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;

/// Sizes of one run.
pub struct Sizes {
    pub elements: usize,
    pub tiny: usize,
    pub latency: usize,
    pub reps: usize,
    pub helpers: usize,
    /// Keys of the Manager workload, the same on every side.
    pub manager: usize,
    /// Keys of the Python package's Manager workload (its peers are slow).
    pub python_keys: usize,
    /// Tiny tasks per pool in `compare_pool.py`.
    pub pool_tasks: usize,
}

/// Per-repetition values of one workload, one way.
pub type Samples = Vec<f64>;

fn main() -> Result<()> {
    shmkit::init(measure::tasks);
    if std::env::args().any(|a| a == "--exit") {
        return Ok(()); // the exec floor (see `measure::exec_floor`)
    }
    measure::spin_if_asked();
    if std::env::args().any(|a| a == "--runs-only") {
        return history::summarise();
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let helpers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sizes = match quick {
        true => Sizes {
            elements: 1 << 24,
            tiny: 20_000,
            latency: 1000,
            reps: 5,
            helpers,
            manager: 20_000,
            python_keys: 20_000,
            pool_tasks: 5_000,
        },
        false => Sizes {
            elements: 1 << 27,
            tiny: 200_000,
            latency: 5000,
            reps: 5,
            helpers,
            manager: 200_000,
            python_keys: 40_000,
            pool_tasks: 20_000,
        },
    };
    let mib = (sizes.elements * 8) >> 20;
    eprintln!("compare: {mib} MiB array, {helpers} helpers / threads / workers, {} rounds after a warm-up", sizes.reps);
    let mut rig = measure::Rig::new(&sizes)?;
    let (mut shm, mut thr) = (HashMap::new(), HashMap::new());
    rig.round(true, &mut HashMap::new(), &mut HashMap::new())?; // warm-up, discarded
    rig.passes(true, &mut HashMap::new(), &mut HashMap::new())?;
    let mut python = python::Python::find();
    let mut py: HashMap<String, Samples> = HashMap::new();
    let mut kills: HashMap<String, String> = HashMap::new();
    for rep in 0..sizes.reps {
        eprintln!("compare: round {}/{}: shmkit and threads ...", rep + 1, sizes.reps);
        rig.round(rep % 2 == 0, &mut shm, &mut thr)?;
        eprintln!("compare: round {}/{}: array passes, side by side ...", rep + 1, sizes.reps);
        rig.passes(rep % 2 == 0, &mut shm, &mut thr)?;
        eprintln!("compare: round {}/{}: cold pass, and a busy neighbour ...", rep + 1, sizes.reps);
        rig.noisy_and_cold(rep % 2 == 1, &mut shm, &mut thr)?;
        let Ok(p) = &python else { continue };
        eprintln!("compare: round {}/{}: python ...", rep + 1, sizes.reps);
        let limit = Duration::from_secs(300);
        let got = python::round(p, &sizes, limit).and_then(|mut got| {
            eprintln!("compare: round {}/{}: the Python package ...", rep + 1, sizes.reps);
            got.extend(python::package_round(p, &sizes, limit)?);
            eprintln!("compare: round {}/{}: Python pools ...", rep + 1, sizes.reps);
            let (pools, killed) = python::pool_round(p, &sizes, limit)?;
            got.extend(pools);
            kills.extend(killed);
            Ok(got)
        });
        match got {
            Ok(got) => got.into_iter().for_each(|(k, v)| py.entry(k).or_default().extend(v)),
            Err(e) => python = Err(e),
        }
    }
    if let Err(why) = &python {
        eprintln!("compare: no Python column: {why}");
    }
    let py = python.ok().map(|p| (py, kills, p.version));
    eprintln!("compare: in-place pass, 1 MiB and up ...");
    let curve = curve::run(&rig.pool, &rig.threads, quick)?;
    report::write(&sizes, &shm, &thr, py.as_ref(), &curve, quick)
}
