//! Running `benches/compare.py` and `benches/compare_python.py` in a venv
//! the bench sets up itself (numpy, UltraDict, this tree's shmkit package).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
pub use shmkit_bench::Python;

use crate::{Samples, Sizes};

/// One round of `benches/compare.py` (its own warm-up, then one run of
/// each workload): per-workload samples.
pub fn round(py: &Python, s: &Sizes, limit: Duration) -> Result<HashMap<String, Samples>> {
    let mut args = vec!["--helpers".to_owned(), s.helpers.to_string(), "--elements".into(), s.elements.to_string()];
    args.extend(["--tiny".into(), s.tiny.to_string(), "--latency".into(), s.latency.to_string()]);
    args.extend(["--reps".into(), "1".into(), "--manager".into(), s.manager.to_string()]);
    shmkit_bench::samples(&py.json(&script("compare.py"), &args, limit)?)
}

/// One round of `benches/compare_python.py`: the shmkit package against
/// `SharedMemory` + numpy, `multiprocessing.Manager` and UltraDict.
pub fn package_round(py: &Python, s: &Sizes, limit: Duration) -> Result<HashMap<String, Samples>> {
    let mut args = vec!["--helpers".to_owned(), s.helpers.to_string(), "--elements".into(), s.elements.to_string()];
    args.extend(["--keys".into(), s.python_keys.to_string(), "--reps".into(), "1".into()]);
    shmkit_bench::samples(&py.json(&script("compare_python.py"), &args, limit)?)
}

/// One round of `benches/compare_pool.py`: Python process pools side
/// by side. Samples per `pool/metric`, and what a killed worker did
/// to each pool.
pub fn pool_round(
    py: &Python,
    s: &Sizes,
    limit: Duration,
) -> Result<(HashMap<String, Samples>, HashMap<String, String>)> {
    let args = ["--helpers".to_owned(), s.helpers.to_string(), "--tasks".into(), s.pool_tasks.to_string()];
    let json = py.json(&script("compare_pool.py"), &args, limit)?;
    let (mut samples, mut kills) = (HashMap::new(), HashMap::new());
    for (pool, metrics) in json.as_object().context("a JSON object")? {
        for (metric, v) in metrics.as_object().context("an object per pool")? {
            match (v.as_str(), v.as_array()) {
                (Some(what), _) => drop(kills.insert(pool.clone(), what.to_owned())),
                (_, Some(values)) => {
                    samples.insert(format!("{pool}/{metric}"), values.iter().filter_map(|x| x.as_f64()).collect());
                }
                _ => {}
            }
        }
    }
    Ok((samples, kills))
}

/// `script` in `benches/`.
fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}
