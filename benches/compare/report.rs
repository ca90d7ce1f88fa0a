//! The comparison table, with ratios and targets, as text, JSON and SVG.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::Result;
use serde_json::json;

use crate::{Samples, Sizes};

/// Median and range of one figure.
#[derive(Clone, Copy)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// Median and range of `samples`, each scaled by `scale`.
    pub fn of(samples: Option<&Samples>, scale: impl Fn(f64) -> f64) -> Option<Stat> {
        let mut v: Vec<f64> = samples?.iter().map(|&x| scale(x)).collect();
        v.sort_by(f64::total_cmp);
        let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
        Some(Stat { median, min: *v.first()?, max: *v.last()? })
    }
}

/// What a row must reach (issue 4's targets, raised by issue 12's).
#[derive(Clone, Copy)]
enum Target {
    VsThreads(f64),
    VsPython(f64),
    AtMost(f64),
    /// Measured for the record, with no target.
    Shown,
}

struct Workload {
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    higher_better: bool,
    target: Target,
    /// Turns a raw sample (seconds, bytes) into the unit shown.
    scale: fn(f64, &Sizes) -> f64,
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            key: "double_s",
            label: "double the array in place",
            unit: "GB/s",
            higher_better: true,
            target: Target::VsThreads(1.0),
            scale: |t, s| 2.0 * (s.elements * 8) as f64 / t / 1e9,
        },
        Workload {
            key: "sum_s",
            label: "sum the array",
            unit: "GB/s",
            higher_better: true,
            target: Target::VsThreads(1.0),
            scale: |t, s| (s.elements * 8) as f64 / t / 1e9,
        },
        Workload {
            key: "double_cold_s",
            label: "double a fresh array (cold: pages mapped during the pass)",
            unit: "GB/s",
            higher_better: true,
            target: Target::Shown,
            scale: |t, s| 2.0 * (s.elements * 8) as f64 / t / 1e9,
        },
        Workload {
            key: "double_noisy_s",
            label: "double in place, another process busy on one core",
            unit: "GB/s",
            higher_better: true,
            target: Target::VsThreads(0.95),
            scale: |t, s| 2.0 * (s.elements * 8) as f64 / t / 1e9,
        },
        Workload {
            key: "sum_noisy_s",
            label: "sum, another process busy on one core",
            unit: "GB/s",
            higher_better: true,
            target: Target::VsThreads(0.95),
            scale: |t, s| (s.elements * 8) as f64 / t / 1e9,
        },
        Workload {
            key: "tiny_1_s",
            label: "tiny tasks, chunk 1",
            unit: "k tasks/s",
            higher_better: true,
            target: Target::VsPython(40.0),
            scale: |t, s| s.tiny as f64 / t / 1e3,
        },
        Workload {
            key: "tiny_1000_s",
            label: "tiny tasks, chunk 1000",
            unit: "k tasks/s",
            higher_better: true,
            target: Target::VsPython(10.0),
            scale: |t, s| s.tiny as f64 / t / 1e3,
        },
        Workload {
            key: "latency_median_s",
            label: "submit→result, median",
            unit: "µs",
            higher_better: false,
            target: Target::AtMost(3.0),
            scale: |t, _| t * 1e6,
        },
        Workload {
            key: "latency_p99_s",
            label: "submit→result, p99",
            unit: "µs",
            higher_better: false,
            target: Target::AtMost(10.0),
            scale: |t, _| t * 1e6,
        },
        Workload {
            key: "pool_ready_s",
            label: "pool of N ready",
            unit: "ms",
            higher_better: false,
            target: Target::AtMost(1.5),
            scale: |t, _| t * 1e3,
        },
        Workload {
            key: "exec_floor_s",
            label: "N copies of this program started at once until all exit (a pool's floor)",
            unit: "ms",
            higher_better: false,
            target: Target::Shown,
            scale: |t, _| t * 1e3,
        },
        Workload {
            key: "attach_s",
            label: "attach the array by name",
            unit: "ms",
            higher_better: false,
            target: Target::AtMost(0.5),
            scale: |t, _| t * 1e3,
        },
        Workload {
            key: "manager_ops",
            label: "Manager: set + append from N workers",
            unit: "M ops/s",
            higher_better: true,
            target: Target::VsPython(300.0),
            scale: |ops, _| ops / 1e6,
        },
        Workload {
            key: "double_extra_bytes",
            label: "extra memory while doubling",
            unit: "% of array",
            higher_better: false,
            target: Target::AtMost(2.0),
            scale: |b, s| 100.0 * b / (s.elements * 8) as f64,
        },
    ]
}

fn stat(samples: Option<&Samples>, w: &Workload, s: &Sizes) -> Option<Stat> {
    Stat::of(samples, |x| (w.scale)(x, s))
}

/// shmkit relative to another: above 1 means shmkit is better.
pub fn ratio(ours: Option<Stat>, theirs: Option<Stat>, higher_better: bool) -> Option<f64> {
    let (a, b) = (ours?.median, theirs?.median);
    let r = if higher_better { a / b } else { b / a };
    (r.is_finite() && r > 0.0).then_some(r) // against a zero (no extra memory), a ratio says nothing
}

pub fn cell(s: Option<Stat>) -> String {
    let f = |x: f64| {
        if x >= 100.0 {
            format!("{x:.0}")
        } else if x >= 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.2}")
        }
    };
    s.map_or("—".into(), |s| format!("{} ({}–{})", f(s.median), f(s.min), f(s.max)))
}

fn met(target: Target, ours: Option<Stat>, vs_threads: Option<f64>, vs_python: Option<f64>) -> (String, String) {
    let yes = |b: bool| if b { "yes" } else { "**no**" }.to_string();
    match target {
        Target::VsThreads(x) => (format!("≥ {x}× threads"), vs_threads.map_or("—".into(), |r| yes(r >= x))),
        Target::VsPython(x) => (format!("≥ {x}× Python"), vs_python.map_or("—".into(), |r| yes(r >= x))),
        Target::AtMost(x) => (format!("≤ {x}"), ours.map_or("—".into(), |s| yes(s.median <= x))),
        Target::Shown => ("—".into(), "—".into()),
    }
}

pub fn write(
    s: &Sizes,
    shmkit: &HashMap<&'static str, Samples>,
    threads: &HashMap<&'static str, Samples>,
    python: Option<&crate::PythonRun>,
    curve: &str,
    quick: bool,
) -> Result<()> {
    let py_samples = python.map(|p| &p.0);
    let mib = (s.elements * 8) >> 20;
    let kills = python.map(|p| &p.1);
    let python = python.map_or("Python: not run", |p| p.2.as_str());
    let header = format!("{}, {}; {python}; a {mib} MiB f64 array", shmkit_bench::today(), shmkit_bench::machine());
    let mut md = format!(
        "Measured {header}; N = {} helpers / threads / workers; median (min–max) of {} interleaved rounds after a warm-up; the warm passes over the whole array, alone and beside a busy neighbour, are timed {} times per round and side (so their medians are of {} samples), in adjacent pairs of alternating order, each after a {} ms pause; the cold one once per round.\n\n",
        s.helpers, s.reps, crate::measure::PAIRS, crate::measure::PAIRS * s.reps, crate::measure::QUIET.as_millis()
    );
    md.push_str("| work | unit | shmkit | threads (rayon) | Python mp + numpy | shmkit vs threads | shmkit vs Python | target | met |\n|---|---|---|---|---|---|---|---|---|\n");
    let (mut rows, mut bars) = (Vec::new(), Vec::new());
    for w in workloads() {
        let ours = stat(shmkit.get(w.key), &w, s);
        let thr = stat(threads.get(w.key), &w, s);
        let py = stat(py_samples.and_then(|p| p.get(w.key)), &w, s);
        let (vt, vp) = (ratio(ours, thr, w.higher_better), ratio(ours, py, w.higher_better));
        let (target, ok) = met(w.target, ours, vt, vp);
        let r = |x: Option<f64>| x.map_or("—".into(), |x| format!("{x:.2}×"));
        let row =
            [w.label.into(), w.unit.into(), cell(ours), cell(thr), cell(py), r(vt), r(vp), target.clone(), ok.clone()];
        writeln!(md, "| {} |", row.join(" | "))?;
        rows.push(
            json!({"key": w.key, "label": w.label, "unit": w.unit, "shmkit": ours.map(|s| [s.median, s.min, s.max]),
            "threads": thr.map(|s| [s.median, s.min, s.max]), "python": py.map(|s| [s.median, s.min, s.max]),
            "vs_threads": vt, "vs_python": vp, "target": target, "met": ok}),
        );
        bars.push((w.label, vt, vp));
    }
    md.push_str("\nRatios: above 1× means shmkit is better (faster, or less time / memory).\n");
    md.push_str("\nThe fixed cost of an in-place pass (doubling, median time per pass; below 1.30× at 1 MiB is the target):\n\n");
    md.push_str(curve);
    md.push_str(&crate::report_python::table(s, shmkit, py_samples));
    if let (Some(py), Some(kills)) = (py_samples, kills) {
        md.push_str(&crate::report_pool::table(py, kills, s.pool_tasks));
    }
    println!("{md}");
    let dir = shmkit_bench::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("compare.md"), &md)?;
    let doc = json!({"measured": header, "helpers": s.helpers, "elements": s.elements, "reps": s.reps, "rows": rows});
    std::fs::write(dir.join("compare.json"), serde_json::to_string_pretty(&doc)?)?;
    if !quick {
        // Kept first: the commit is read before this run rewrites the README.
        crate::history::keep(&doc)?;
        shmkit_bench::update_readme("compare", &md)?;
        crate::history::summarise()?;
    }
    std::fs::write(dir.join("compare.svg"), svg(&bars, &header))?;
    eprintln!("compare: wrote {}/compare.{{md,json,svg}}", dir.display());
    Ok(())
}

/// Horizontal bars of the two ratios per workload, on a log scale.
fn svg(bars: &[(&str, Option<f64>, Option<f64>)], header: &str) -> String {
    let (w, left, row) = (900.0, 250.0, 34.0);
    let h = 70.0 + row * bars.len() as f64;
    let x = |r: f64| left + (r.clamp(0.01, 1000.0).log10() + 2.0) / 5.0 * (w - left - 20.0);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n"
    );
    writeln!(s, "<rect width='100%' height='100%' fill='white'/><text x='10' y='18' font-size='13'>shmkit relative to threads (blue) and to Python (orange); right of 1× = shmkit better</text>").ok();
    writeln!(s, "<text x='10' y='{}' fill='#555'>{}</text>", h - 8.0, header.replace('&', "&amp;")).ok();
    for (tick, label) in
        [(0.01, "0.01×"), (0.1, "0.1×"), (1.0, "1×"), (10.0, "10×"), (100.0, "100×"), (1000.0, "1000×")]
    {
        let stroke = if tick == 1.0 { "#000" } else { "#ddd" };
        writeln!(s, "<line x1='{0}' x2='{0}' y1='30' y2='{1}' stroke='{stroke}'/><text x='{0}' y='{2}' text-anchor='middle'>{label}</text>", x(tick), h - 30.0, h - 18.0).ok();
    }
    for (i, (label, vt, vp)) in bars.iter().enumerate() {
        let y = 34.0 + row * i as f64;
        writeln!(s, "<text x='{}' y='{}' text-anchor='end'>{label}</text>", left - 8.0, y + 17.0).ok();
        for (k, (r, color)) in [(vt, "#3b6fb6"), (vp, "#e8862a")].into_iter().enumerate() {
            if let Some(r) = r {
                let (a, b) = (x(1.0).min(x(*r)), x(1.0).max(x(*r)));
                writeln!(
                    s,
                    "<rect x='{a}' y='{}' width='{}' height='12' fill='{color}'/>",
                    y + 4.0 + 13.0 * k as f64,
                    (b - a).max(1.0)
                )
                .ok();
            }
        }
    }
    s.push_str("</svg>\n");
    s
}
