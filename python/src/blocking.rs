//! Blocking calls from Python: the wait runs in slices with the GIL
//! released (other Python threads go on), and between slices Python's
//! signal handlers run, so Ctrl-C (`KeyboardInterrupt`) ends a wait within
//! a slice.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How long one slice of a wait lasts: Ctrl-C is answered within it.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// A Python timeout in seconds: `None` waits as long as it takes; a
/// negative or NaN one is a `ValueError`.
pub(crate) fn limit(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => {
            Err(pyo3::exceptions::PyValueError::new_err(format!("timeout must be a non-negative number, not {t}")))
        }
        Some(t) => Ok(Some(Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX))),
    }
}

/// Calls `attempt(slice)` with the GIL released until it returns `Some`,
/// each call waiting at most `slice` (never past the deadline `limit`
/// sets), running signal handlers between calls. `Ok(None)` once `limit`
/// has passed; an exception a signal handler raised ends it.
pub(crate) fn wait<T: Send>(
    py: Python<'_>,
    limit: Option<Duration>,
    mut attempt: impl FnMut(Duration) -> Option<T> + Send,
) -> PyResult<Option<T>> {
    let deadline = limit.and_then(|l| Instant::now().checked_add(l));
    loop {
        let slice = deadline.map_or(SLICE, |d| d.saturating_duration_since(Instant::now()).min(SLICE));
        if let Some(done) = py.detach(|| attempt(slice)) {
            return Ok(Some(done));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}
