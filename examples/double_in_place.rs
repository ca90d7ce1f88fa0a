//! Doubles a 1 GiB shared array in place with one helper process per core.
//!
//! The coordinator creates a named f64 array, launches helpers by
//! re-running this executable (never `fork`), and each helper attaches by
//! name alone and doubles its rows in place. The coordinator then checks
//! every element and reports the rate as 2 × bytes / time (each element is
//! read once and written once).
//!
//! ```text
//! cargo run --release --example double_in_place [-- --elements N --helpers K]
//! ```

use std::process::{Child, Command};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use ndarray::Ix1;
use shmkit::SharedArray;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--helper") => helper(&args[1..]),
        _ => coordinator(&args),
    }
}

/// A helper: attach to the named array and double rows `start..end`.
fn helper(args: &[String]) -> Result<()> {
    let [name, start, end] = args else { bail!("usage: --helper NAME START END") };
    let mut array = SharedArray::<f64, Ix1>::open(name)?;
    array.rows_mut(start.parse()?..end.parse()?)?.mapv_inplace(|x| 2.0 * x);
    Ok(())
}

fn coordinator(args: &[String]) -> Result<()> {
    let elements = flag(args, "--elements")?.unwrap_or(1 << 27);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let helpers = flag(args, "--helpers")?.unwrap_or(cores).max(1);
    let mut array = SharedArray::<f64, Ix1>::create_unique(elements)?;
    let gib = (elements * 8) as f64 / (1u64 << 30) as f64;
    println!("created '{}': {elements} f64 ({gib:.2} GiB), {helpers} helper processes", array.name());
    array.as_slice_mut().iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);

    let start = Instant::now();
    run_helpers(array.name(), elements, helpers)?;
    let secs = start.elapsed().as_secs_f64();

    let wrong = array.as_slice().iter().enumerate().filter(|&(i, &x)| x != 2.0 * i as f64).count();
    ensure!(wrong == 0, "{wrong} of {elements} elements are not doubled");
    let gbps = 2.0 * (elements * 8) as f64 / secs / 1e9;
    println!("verified all {elements} elements doubled in place");
    println!("time {:.1} ms (helper start + attach + work), {gbps:.2} GB/s", secs * 1e3);
    Ok(()) // `array` drops here and unlinks the segment; on `?` above, too.
}

/// Starts one helper per share of rows and waits for all. If one fails,
/// the others are killed so no process outlives the coordinator.
fn run_helpers(name: &str, elements: usize, helpers: usize) -> Result<()> {
    let exe = std::env::current_exe().context("locate own executable")?;
    let share = elements.div_ceil(helpers);
    let mut children: Vec<Child> = Vec::new();
    for k in 0..helpers {
        let (lo, hi) = ((k * share).min(elements), ((k + 1) * share).min(elements));
        let spawned = Command::new(&exe).args(["--helper", name, &lo.to_string(), &hi.to_string()]).spawn();
        match spawned {
            Ok(child) => children.push(child),
            Err(e) => return Err(kill_all(children, e.into())),
        }
    }
    for k in 0..children.len() {
        let status = children[k].wait()?;
        if !status.success() {
            let rest = children.split_off(k + 1);
            return Err(kill_all(rest, anyhow::anyhow!("helper {k} failed: {status}")));
        }
    }
    Ok(())
}

fn kill_all(children: Vec<Child>, error: anyhow::Error) -> anyhow::Error {
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    error
}

/// The value after `name` in `args`, if present.
fn flag(args: &[String], name: &str) -> Result<Option<usize>> {
    let Some(i) = args.iter().position(|a| a == name) else { return Ok(None) };
    let value = args.get(i + 1).with_context(|| format!("{name} needs a value"))?;
    Ok(Some(value.parse().with_context(|| format!("{name} {value}: not a number"))?))
}
