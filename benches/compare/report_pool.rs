//! The Python pools' table: shmkit's `ProcessPool` and `Pool` beside the
//! pools Python users have (`benches/compare_pool.py`), then the targets.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::report::{cell, Stat};
use crate::Samples;

/// The pools, in the table's order (the script's names).
const POOLS: [&str; 7] = [
    "shmkit.ProcessPool",
    "shmkit.Pool",
    "ProcessPoolExecutor (fork)",
    "ProcessPoolExecutor (spawn)",
    "multiprocessing.Pool (fork)",
    "loky",
    "pebble",
];

/// Scales a sample to the unit shown.
type Scale = fn(f64) -> f64;

/// The columns: metric key, heading, scale to the shown unit.
const COLUMNS: [(&str, &str, Scale); 4] = [
    ("ready_s", "ready: first result back (ms)", |s| s * 1e3),
    ("submit_tps", "tiny tasks, one by one (k/s)", |t| t / 1e3),
    ("latency_s", "submit → result, median (µs)", |s| s * 1e6),
    ("map_auto_tps", "map, automatic chunks (k/s)", |t| t / 1e3),
];

/// The table, as Markdown (empty when the pools did not run).
pub fn table(py: &HashMap<String, Samples>, kills: &HashMap<String, String>, tasks: usize) -> String {
    let stat = |pool: &str, key: &str, scale: Scale| Stat::of(py.get(&format!("{pool}/{key}")), scale);
    if stat(POOLS[0], "ready_s", |x| x).is_none() {
        return String::new();
    }
    let mut md = format!(
        "\nPython process pools (`benches/compare_pool.py`, in the same rounds): tiny tasks (`x*x`, {tasks} one \
         by one, {} through `map`), then one worker SIGKILLed while it runs a task:\n\n| pool |",
        10 * tasks
    );
    for (_, heading, _) in COLUMNS {
        let _ = write!(md, " {heading} |");
    }
    md.push_str(" after a worker is killed |\n|---|---|---|---|---|---|\n");
    for pool in POOLS {
        let mut row = format!("| {pool} |");
        for (key, _, scale) in COLUMNS {
            let _ = write!(row, " {} |", cell(stat(pool, key, scale)));
        }
        let _ = writeln!(md, "{row} {} |", kills.get(pool).map_or("—", String::as_str));
    }
    md.push_str(&targets(&stat));
    md
}

/// The targets the Python pool issue set, met or not.
fn targets(stat: &dyn Fn(&str, &str, Scale) -> Option<Stat>) -> String {
    let median = |pool: &str, key: &str| stat(pool, key, |x| x).map(|s| s.median);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let (ours, futures, mp) = ("shmkit.ProcessPool", "ProcessPoolExecutor (fork)", "multiprocessing.Pool (fork)");
    let rows = [
        (
            "tiny tasks, one by one, vs `ProcessPoolExecutor`",
            ratio(median(ours, "submit_tps"), median(futures, "submit_tps")),
            "≥ 10×",
            10.0,
        ),
        (
            "`map` with automatic chunks, vs `multiprocessing.Pool`",
            ratio(median("shmkit.Pool", "map_auto_tps"), median(mp, "map_auto_tps")),
            "≥ 2×",
            2.0,
        ),
        (
            "round trip, `ProcessPoolExecutor`'s / ours",
            ratio(median(futures, "latency_s"), median(ours, "latency_s")),
            "≥ 5×",
            5.0,
        ),
    ];
    let mut md = String::from("\n| target | measured | wanted | met |\n|---|---|---|---|\n");
    for (what, got, wanted, least) in rows {
        let met = if got.is_some_and(|g| g >= least) { "yes" } else { "**no**" };
        let _ = writeln!(md, "| {what} | {} | {wanted} | {met} |", got.map_or("—".into(), |g| format!("{g:.2}×")));
    }
    let ready = median(ours, "ready_s").map(|s| s * 1e3);
    let met = if ready.is_some_and(|r| r <= 35.0) { "yes" } else { "**no**" };
    let _ = writeln!(
        md,
        "| a pool of N ready (first result back) | {} | ≤ 35 ms | {met} |",
        ready.map_or("—".into(), |r| format!("{r:.1} ms"))
    );
    md
}
