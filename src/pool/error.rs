//! Why a task, or a pool, failed.

use std::fmt;
use std::io;
use std::ops::Range;
use std::time::Duration;

use crate::pool::transport::wire::{Failure, Items};

/// Why one task produced no result. Each task's failure is its own: the
/// other tasks of the same call still complete.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the message and where.
    #[error("task panicked: {0}")]
    Panicked(String),
    /// The task returned an error; its chain, outermost first.
    #[error("task failed: {}", .0.join(": "))]
    Failed(Vec<String>),
    /// The helper running the task died (killed, OOM-killed, crashed).
    #[error("the helper process running the task died ({})", describe(*signal, *code))]
    WorkerDied {
        /// The signal that ended it (9 for SIGKILL and the OOM killer).
        signal: Option<i32>,
        /// Its exit code, if it exited instead.
        code: Option<i32>,
    },
    /// The task ran past its timeout; its helper was killed and replaced.
    #[error("the task ran past its timeout of {0:?}; its helper was killed and replaced")]
    TimedOut(Duration),
    /// The task was cancelled through its handle.
    #[error("the task was cancelled")]
    Cancelled,
    /// The pool was terminated before the task finished.
    #[error("the pool was terminated before the task finished")]
    Terminated,
    /// Arguments or result could not be (de)serialised.
    #[error("arguments or result could not be (de)serialised: {0}")]
    Codec(String),
    /// The function was not registered in the pool's task list.
    #[error("task '{0}' is not registered: add `r.add(...)` for it to the pool's tasks function")]
    NotRegistered(&'static str),
    /// No helper could be started to run it.
    #[error("no helper process could be started: {0}")]
    NoHelper(String),
    /// The helper has no task of this number: it registers other tasks
    /// than the coordinator (a helper binary built from other code).
    #[error("the helper has no task number {0}: build the helper and the coordinator from the same tasks function")]
    Unknown(u32),
}

fn describe(signal: Option<i32>, code: Option<i32>) -> String {
    match (signal, code) {
        (Some(9), _) => "SIGKILL: killed, or out of memory".to_owned(),
        (Some(11), _) => "SIGSEGV: segmentation fault".to_owned(),
        (Some(6), _) => "SIGABRT: aborted".to_owned(),
        (Some(s), _) => format!("signal {s}"),
        (None, Some(c)) => format!("exit code {c}"),
        (None, None) => "no exit status".to_owned(),
    }
}

impl From<Failure> for TaskError {
    fn from(f: Failure) -> TaskError {
        match f {
            Failure::Panic(msg) => TaskError::Panicked(msg),
            Failure::Error(chain) => TaskError::Failed(chain),
            Failure::Codec(msg) => TaskError::Codec(msg),
            Failure::Unknown(id) => TaskError::Unknown(id),
        }
    }
}

/// Why a pool could not be built or a helper not started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The helper program could not be started.
    #[error("could not start helper program '{program}': {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A helper exited before it was ready, without saying why: its `main`
    /// returned or exited before reaching `shmkit::init(tasks)` (wrong
    /// arguments for a helper binary, say, or, for a pool built inside a
    /// test, a test name that runs no test), or it crashed.
    #[error("helper exited before it was ready ({0}): its main must reach shmkit::init(tasks) first (for a pool built inside a #[test], .in_test(name) must name that test exactly)")]
    HelperExited(String),
    /// A pool built inside a `#[test]` whose helper, re-running the test
    /// binary, reached `shmkit::init` in another test.
    #[error("the pool was built in test {built_in:?}, but its helper served from test {served_from:?}: build the pool on the test's own thread, or name the test with .in_test(name)")]
    WrongTest {
        /// The test that built the pool.
        built_in: String,
        /// Where the helper called `init`.
        served_from: String,
    },
    /// A helper did not report ready in time.
    #[error("helper not ready after {0:?}; does its main call shmkit::init(tasks) first, before anything slow?")]
    StartTimeout(Duration),
    /// A helper's `main` built a pool instead of calling `shmkit::init`
    /// first: without the check, every helper would start a pool of its
    /// own, and so on. The helper exited at once.
    #[error("helper program '{program}' used shmkit (a segment or a pool) before calling shmkit::init(tasks), and exited there: make `shmkit::init(tasks);` the first line of its main, or give the pool a separate helper binary with .program(path) whose main calls shmkit::serve(tasks)")]
    NotInitialized {
        /// The helper program.
        program: String,
    },
    /// A helper registers different tasks than the coordinator.
    #[error("helper registers different tasks than the coordinator (first difference at #{index}: coordinator {ours:?}, helper {theirs:?}); build both from the same tasks function")]
    TaskMismatch {
        /// Position of the first difference.
        index: usize,
        /// The coordinator's task there.
        ours: Option<String>,
        /// The helper's task there.
        theirs: Option<String>,
    },
    /// A helper binary built with another version of shmkit.
    #[error(
        "helper speaks another protocol: {0}; build the helper binary with the same shmkit version as the coordinator"
    )]
    Protocol(String),
    /// The initializer failed in a helper.
    #[error("initializer failed in a helper: {0}")]
    InitFailed(TaskError),
    /// The initializer function is not registered.
    #[error("{0}")]
    NotRegistered(TaskError),
    /// The pool's shared segment could not be made (a full `/dev/shm`,
    /// say: the error says what to do).
    #[error("the pool's shared segment could not be made: {0}")]
    Segment(#[source] crate::Error),
    /// Talking to a helper failed.
    #[error("helper I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// Why an in-place pass ([`Pool::for_each_chunk_mut`](super::Pool::for_each_chunk_mut))
/// did not complete: either nothing was touched, or exactly which rows
/// were changed is known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InPlaceError {
    /// Another view of the array's bytes is live (through another handle,
    /// in this or another process). A pass claims every row before any
    /// chunk runs, so nothing was changed: drop that view and run it again.
    #[error("the pass changed nothing: {0}")]
    Busy(#[source] crate::Error),
    /// Some chunks failed; the report says which rows were applied, which
    /// were not, and which may be half-applied.
    #[error("{0}")]
    Incomplete(RowReport),
}

impl InPlaceError {
    /// The report of an incomplete pass; `None` if nothing was changed.
    pub fn report(&self) -> Option<&RowReport> {
        match self {
            InPlaceError::Incomplete(r) => Some(r),
            InPlaceError::Busy(_) => None,
        }
    }
}

/// What an incomplete in-place pass did, by rows of the first axis, each
/// list in row order with adjacent ranges merged. Together they cover
/// every row once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RowReport {
    /// Rows whose chunk ran to its end: changed exactly once.
    pub applied: Vec<Range<usize>>,
    /// Rows whose chunk never began: unchanged (cancelled, the pool
    /// terminated before it, or the helper could not attach the array).
    pub not_applied: Vec<Range<usize>>,
    /// Rows whose chunk began and did not finish (its helper died or was
    /// killed, or the task panicked): possibly half-changed; with why.
    pub in_doubt: Vec<(Range<usize>, TaskError)>,
}

impl RowReport {
    /// The first failure in row order.
    pub fn first_error(&self) -> Option<&TaskError> {
        self.in_doubt.first().map(|(_, e)| e)
    }
}

impl fmt::Display for RowReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |ranges: &mut dyn Iterator<Item = &Range<usize>>| {
            ranges.map(|r| format!("{}..{}", r.start, r.end)).collect::<Vec<_>>().join(", ")
        };
        write!(f, "an in-place pass did not complete: rows [{}] applied", list(&mut self.applied.iter()))?;
        write!(f, ", rows [{}] not applied", list(&mut self.not_applied.iter()))?;
        for (rows, why) in &self.in_doubt {
            write!(f, ", rows {}..{} in doubt ({why})", rows.start, rows.end)?;
        }
        write!(f, "; rerun only what is not applied, and repair what is in doubt")
    }
}

/// Why a reduction over an array ([`Pool::reduce`](super::Pool::reduce),
/// `sum`, `min`, `max`) produced no value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReduceError {
    /// A mutable view of the array is live (through another handle, in
    /// this or another process); no chunk ran.
    #[error("the reduction did not start: {0}")]
    Busy(#[source] crate::Error),
    /// An integer sum does not fit `i64` (or `u64`): numpy would wrap
    /// around; sum the array as f64 yourself (`reduce`) if an
    /// approximation will do.
    #[error("the sum of these {dtype} elements overflows 64 bits (numpy would wrap around silently)")]
    Overflow {
        /// The elements' dtype.
        dtype: &'static str,
    },
    /// A chunk failed; the first failure in row order.
    #[error("the reduction over rows {}..{} failed: {error}", rows.start, rows.end)]
    Failed {
        /// The chunk's rows.
        rows: Range<usize>,
        /// Why it failed.
        error: TaskError,
    },
}

/// Why a job has no results, and whether its task body may have run (an
/// in-place chunk that started may be half-applied; one that did not
/// start changed nothing).
#[derive(Clone, Debug)]
pub(crate) struct Failed {
    pub error: TaskError,
    pub started: bool,
}

/// A job's results (one per argument, failures among them), or why the
/// whole job has none (its helper died, it timed out, was cancelled...).
pub(crate) type Outcome = Result<Items, Failed>;
