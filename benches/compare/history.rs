//! Several full runs of the same code, summarised: one run on a shared
//! VM moves by up to 30%, so the array targets are judged on the median
//! of five runs and on the worst one.
//!
//! Each full run keeps its JSON in `target/bench/history/` under the
//! commit it measured (`git describe --always --dirty`). The section
//! `compare-runs` of `benches/README.md` is rewritten from the newest
//! runs of the newest commit; `-- --runs-only` rewrites it from what is
//! kept, without measuring.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// Runs summarised (the newest of one commit).
const RUNS: usize = 5;

/// The rows summarised: key, what is compared, and the target.
const ROWS: &[(&str, Measure, Target)] = &[
    ("double_s", Measure::VsThreads, Target::AtLeast(1.0, 0.93)),
    ("sum_s", Measure::VsThreads, Target::AtLeast(1.0, 0.93)),
    ("double_noisy_s", Measure::VsThreads, Target::AtLeast(0.95, 0.0)),
    ("sum_noisy_s", Measure::VsThreads, Target::AtLeast(0.95, 0.0)),
    ("double_cold_s", Measure::VsThreads, Target::None),
    ("latency_median_s", Measure::Ours, Target::AtMost(3.0)),
    ("latency_p99_s", Measure::Ours, Target::AtMost(10.0)),
    ("pool_ready_s", Measure::Ours, Target::AtMost(1.5)),
    ("exec_floor_s", Measure::Ours, Target::None),
];

#[derive(Clone, Copy)]
enum Measure {
    /// shmkit / rayon, higher is better.
    VsThreads,
    /// shmkit's own median, in the row's unit (lower is better).
    Ours,
}

#[derive(Clone, Copy)]
enum Target {
    /// A median of at least this, and no run below the second (if > 0).
    AtLeast(f64, f64),
    /// A median of at most this.
    AtMost(f64),
    None,
}

fn dir() -> PathBuf {
    shmkit_bench::target_dir().join("bench/history")
}

/// The commit measured: `git describe --always --dirty`, or "unknown".
fn commit() -> String {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(shmkit_bench::workspace())
        .output();
    out.ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// Keeps a full run's JSON (`doc`) under this commit.
pub fn keep(doc: &Value) -> Result<()> {
    std::fs::create_dir_all(dir())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let path = dir().join(format!("compare-{now}-{}.json", commit()));
    std::fs::write(&path, serde_json::to_string_pretty(doc)?)?;
    Ok(())
}

/// The kept runs of the newest commit, newest last, at most [`RUNS`].
fn newest_runs() -> Result<(String, Vec<Value>)> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir()) {
        Ok(entries) => {
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect()
        }
        Err(_) => Vec::new(),
    };
    files.sort(); // by time: the names start with it
    let commit_of =
        |p: &Path| p.file_stem().and_then(|s| s.to_str()).and_then(|s| s.splitn(3, '-').nth(2)).map(str::to_owned);
    let Some(newest) = files.last().and_then(|p| commit_of(p)) else { return Ok((String::new(), Vec::new())) };
    let mine: Vec<&PathBuf> = files.iter().filter(|p| commit_of(p).as_deref() == Some(&newest)).collect();
    let runs = mine[mine.len().saturating_sub(RUNS)..]
        .iter()
        .map(|p| std::fs::read_to_string(p).context("reading a kept run").and_then(|t| Ok(serde_json::from_str(&t)?)))
        .collect::<Result<Vec<Value>>>()?;
    Ok((newest, runs))
}

fn value(run: &Value, key: &str, m: Measure) -> Option<f64> {
    let row = run["rows"].as_array()?.iter().find(|r| r["key"] == key)?;
    match m {
        Measure::VsThreads => row["vs_threads"].as_f64(),
        Measure::Ours => row["shmkit"][0].as_f64(),
    }
}

fn label(run: &Value, key: &str, m: Measure) -> String {
    let row = run["rows"].as_array().and_then(|rows| rows.iter().find(|r| r["key"] == key));
    let (label, unit) =
        row.map_or((key, ""), |r| (r["label"].as_str().unwrap_or(key), r["unit"].as_str().unwrap_or("")));
    match m {
        Measure::VsThreads => format!("{label}, vs threads"),
        Measure::Ours => format!("{label} ({unit})"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Rewrites the `compare-runs` section from the kept runs.
pub fn summarise() -> Result<()> {
    let (commit, runs) = newest_runs()?;
    let mut md = String::new();
    if runs.is_empty() {
        md.push_str("No full run kept yet.\n");
        return Ok(shmkit_bench::update_readme("compare-runs", &md)?);
    }
    writeln!(
        md,
        "The newest {} full runs of commit `{commit}` (the first measured {}):\n",
        runs.len(),
        runs[0]["measured"].as_str().unwrap_or("?")
    )?;
    let heads: Vec<String> = (1..=runs.len()).map(|i| format!("run {i}")).collect();
    writeln!(md, "| row | {} | median | worst | target | met |", heads.join(" | "))?;
    writeln!(md, "|---|{}---|---|---|---|", "---|".repeat(runs.len()))?;
    for &(key, m, target) in ROWS {
        // A run without the row (kept before the row existed) shows "—":
        // every run keeps its column.
        let per_run: Vec<Option<f64>> = runs.iter().map(|r| value(r, key, m)).collect();
        let values: Vec<f64> = per_run.iter().flatten().copied().collect();
        if values.is_empty() {
            continue;
        }
        let show = |x: f64| match m {
            Measure::VsThreads => format!("{x:.2}×"),
            Measure::Ours => format!("{x:.2}"),
        };
        let (mid, worst) = (median(values.clone()), values.iter().copied().fold(f64::INFINITY, f64::min));
        let yes = |ok: bool| if ok { "yes" } else { "**no**" };
        let (goal, met) = match target {
            Target::AtLeast(want, floor) if floor > 0.0 => {
                (format!("median ≥ {want:.2}×, no run < {floor:.2}×"), yes(mid >= want && worst >= floor))
            }
            Target::AtLeast(want, _) => (format!("median ≥ {want:.2}×"), yes(mid >= want)),
            Target::AtMost(most) => (format!("median ≤ {most}"), yes(mid <= most)),
            Target::None => ("—".into(), "—"),
        };
        let cells: Vec<String> = per_run.iter().map(|x| x.map_or("—".into(), show)).collect();
        let worst = match m {
            Measure::VsThreads => show(worst),
            Measure::Ours => "—".into(),
        };
        writeln!(
            md,
            "| {} | {} | {} | {worst} | {goal} | {met} |",
            label(runs.iter().find(|r| value(r, key, m).is_some()).unwrap_or(&runs[0]), key, m),
            cells.join(" | "),
            show(mid)
        )?;
    }
    md.push_str("\nRatios are shmkit / rayon (above 1× shmkit is faster); the other rows are shmkit's own medians. ");
    md.push_str("Passes are warm (every helper has mapped the array's pages) except the cold row, where the coordinator created the array and the helpers map its pages during the pass.\n");
    Ok(shmkit_bench::update_readme("compare-runs", &md)?)
}
