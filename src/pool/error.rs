//! Why a task, or a pool, failed.

use std::io;
use std::time::Duration;

use super::wire::Failure;

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
            Failure::Unknown(id) => TaskError::Codec(format!("the helper has no task number {id}")),
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
    /// A helper exited before it was ready. Usually its `main` does not
    /// call `shmkit::init(tasks)` first, or the helper arguments are wrong.
    #[error("helper exited before it was ready ({0}); does its main call shmkit::init(tasks) first?")]
    HelperExited(String),
    /// A helper did not report ready in time.
    #[error("helper not ready after {0:?}; does its main call shmkit::init(tasks) first, before anything slow?")]
    StartTimeout(Duration),
    /// A helper's `main` built a pool instead of calling `shmkit::init`
    /// first: without the check, every helper would start a pool of its
    /// own, and so on. The helper exited at once.
    #[error("helper program '{program}' reached Pool::build() without calling shmkit::init(tasks) first: make `shmkit::init(tasks);` the first line of its main, or give the pool a separate helper binary with .program(path) whose main calls shmkit::serve(tasks)")]
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
    /// Talking to a helper failed.
    #[error("helper I/O failed: {0}")]
    Io(#[from] io::Error),
}
