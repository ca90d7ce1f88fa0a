//! The Python package's table: shmkit from Python against shmkit from
//! Rust (the same run's figures) and against what Python users have.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::report::{cell, ratio, Stat};
use crate::{Samples, Sizes};

/// One row: the package's key, the Rust figure's key (if any), the peer's.
struct Row {
    label: &'static str,
    unit: &'static str,
    package: &'static str,
    rust: Option<&'static str>,
    peer: &'static str,
    peer_name: &'static str,
    higher_better: bool,
    /// Least ratio to the Rust figure, and to the peer, that meets the target.
    vs_rust: Option<f64>,
    vs_peer: f64,
    scale: fn(f64, &Sizes) -> f64,
}

fn rows() -> Vec<Row> {
    let gbs = |t: f64, s: &Sizes| (s.elements * 8) as f64 / t / 1e9;
    vec![
        Row {
            label: "create + fill the array",
            unit: "GB/s",
            package: "pkg_create_fill_s",
            rust: Some("create_fill_s"),
            peer: "shm_create_fill_s",
            peer_name: "`SharedMemory` + numpy",
            higher_better: true,
            vs_rust: Some(1.0 / 1.1),
            vs_peer: 1.0,
            scale: gbs,
        },
        Row {
            label: "attach the array by name (median of 21)",
            unit: "µs",
            package: "pkg_attach_s",
            rust: Some("attach_s"),
            peer: "shm_attach_s",
            peer_name: "`SharedMemory` + numpy",
            higher_better: false,
            vs_rust: Some(1.0 / 1.1),
            vs_peer: 1.0,
            scale: |t, _| t * 1e6,
        },
        Row {
            label: "double in place from N processes",
            unit: "GB/s",
            package: "pkg_double_s",
            rust: Some("double_s"),
            peer: "shm_double_s",
            peer_name: "`SharedMemory` + numpy",
            higher_better: true,
            vs_rust: Some(1.0 / 1.1),
            vs_peer: 1.0,
            scale: |t, s| 2.0 * (s.elements * 8) as f64 / t / 1e9,
        },
        Row {
            label: "Manager seed: set + append from N workers",
            unit: "k ops/s",
            package: "pkg_manager_ops",
            rust: None,
            peer: "mp_manager_ops",
            peer_name: "`multiprocessing.Manager`",
            higher_better: true,
            vs_rust: None,
            vs_peer: 100.0,
            scale: |ops, _| ops / 1e3,
        },
        Row {
            label: "dict sets from N workers",
            unit: "k sets/s",
            package: "pkg_sets",
            rust: None,
            peer: "ultradict_sets",
            peer_name: "UltraDict 0.0.6, shared lock",
            higher_better: true,
            vs_rust: None,
            vs_peer: 30.0,
            scale: |ops, _| ops / 1e3,
        },
    ]
}

/// The table, as Markdown (empty when Python did not run).
pub fn table(s: &Sizes, rust: &HashMap<&'static str, Samples>, py: Option<&HashMap<String, Samples>>) -> String {
    let Some(py) = py else { return String::new() };
    let mut md = format!(
        "\nThe Python package (`benches/compare_python.py`, in the same rounds): shmkit from Python against \
         shmkit from Rust and against what Python offers; the Manager rows use {} keys:\n\n",
        s.python_keys
    );
    md.push_str("| work | unit | shmkit (Python) | shmkit (Rust) | peer | peer's figure | Python vs Rust | Python vs peer | target | met |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows() {
        let scale = |x| (r.scale)(x, s);
        let ours = Stat::of(py.get(r.package), scale);
        let rust = r.rust.and_then(|k| Stat::of(rust.get(k), scale));
        let peer = Stat::of(py.get(r.peer), scale);
        let (vr, vp) = (ratio(ours, rust, r.higher_better), ratio(ours, peer, r.higher_better));
        let x = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2}×"));
        let mut target = format!("≥ {}× peer", r.vs_peer);
        let mut ok = vp.is_some_and(|v| v >= r.vs_peer);
        if let Some(least) = r.vs_rust {
            target = format!("≥ {least:.2}× Rust, {target}");
            ok &= vr.is_some_and(|v| v >= least);
        }
        let met = if ok { "yes" } else { "**no**" };
        let cells = [r.label, r.unit, &cell(ours), &cell(rust), r.peer_name, &cell(peer), &x(vr), &x(vp), &target, met];
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    md.push_str("\nRatios: above 1× means the Python package is better; 0.91× Rust is \"within 1.1× of Rust\".\n");
    md
}
