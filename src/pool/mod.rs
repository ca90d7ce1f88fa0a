//! The process pool: helpers that attach arrays by name and run tasks,
//! with timeouts and crash recovery that never hang.
//!
//! How it works (a job's life, the shared-memory rings, who sleeps when,
//! what a fault does) is in the design note, `src/pool/README.md`.

mod call;
mod config;
mod coordinator;
mod error;
mod helper;
mod start;
mod transport;

use std::sync::mpsc::channel;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use call::batch::{Batch, Unordered};
pub use call::builder::PoolBuilder;
pub use call::completions::Completions;
pub use call::handle::{as_completed, AsCompleted, TaskHandle};
pub use error::{InPlaceError, PoolError, ReduceError, RowReport, TaskError};
pub use helper::registry::Registry;
pub use helper::{init, is_helper, prepare_helper, serve};
pub use transport::wire::ChunkArgs;

/// The shapes of functions a pool runs, as trait bounds: [`Task`] (with
/// the sealed kinds [`Call`](task::Call), [`WritesRows`](task::WritesRows),
/// [`ReadsRows`](task::ReadsRows)) and the
/// marker types that tell the shapes apart. Inferred, never written by
/// hand: they are named here so that rustdoc and error messages can.
pub mod task {
    pub use super::helper::registry::{
        Call, Fallible, Fallible2, Fallible3, Fallible4, Plain, Plain2, Plain3, Plain4, ReadsRows, Rows, RowsAt,
        RowsMut, RowsMutAt, RowsMutWith, RowsWith, Task, WritesRows,
    };
}
pub use task::Task;
#[cfg(fuzzing)]
pub(crate) use transport::{codec, wire};

use config::Config;
use coordinator::shared::{lock, Shared};

/// A pool of helper processes that run registered tasks.
///
/// Helpers are new processes (this executable again, or a helper binary),
/// never forks of this one, so a pool is safe in threaded and async
/// programs. A helper that dies or times out fails only the job it was
/// running (or reruns it, see [`PoolBuilder::retries`]) and is replaced;
/// every other job completes. Dropping the pool lets queued jobs finish,
/// then stops the helpers; [`terminate`](Pool::terminate) kills them now.
///
/// ```no_run
/// fn square(x: u64) -> u64 { x * x }
/// fn tasks(r: &mut shmkit::Registry) { r.add(square); }
///
/// shmkit::init(tasks); // first line of main: a helper serves here and exits
/// let pool = shmkit::Pool::new(tasks)?;
/// let squares: Vec<u64> = pool.map(square, 0..100).into_iter().collect::<Result<_, _>>()?;
/// # Ok::<(), anyhow::Error>(())
/// ```
pub struct Pool {
    inner: Arc<Shared>,
    drivers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool with default settings running `tasks`: one helper per core.
    pub fn new(tasks: fn(&mut Registry)) -> Result<Pool, PoolError> {
        Pool::builder().tasks(tasks).build()
    }

    /// A builder for a pool with other settings.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    fn start(registry: Registry, config: Config) -> Result<Pool, PoolError> {
        let n = config.helpers;
        let region = transport::region::Region::create(n).map_err(PoolError::Segment)?;
        let inner = Arc::new(Shared::new(registry, config, region));
        let (tx, rx) = channel();
        let mut pool = Pool { inner: inner.clone(), drivers: Vec::with_capacity(n) };
        for i in 0..n {
            let (inner, tx) = (inner.clone(), tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("shmkit-helper-{i}"))
                .spawn(move || coordinator::driver::run(inner, i, tx));
            pool.drivers.push(spawned.map_err(PoolError::Io)?);
        }
        drop(tx); // so that a driver that died without reporting ends the wait
        for _ in 0..n {
            // On error, dropping `pool` stops the rest.
            let report = rx.recv().map_err(|_| PoolError::Io(std::io::Error::other("a pool driver thread died")))?;
            report?;
        }
        Ok(pool)
    }

    /// Number of helper processes.
    pub fn helpers(&self) -> usize {
        self.inner.config.helpers
    }

    /// Process ids of the helpers alive now.
    pub fn helper_pids(&self) -> Vec<u32> {
        lock(&self.inner.helpers).iter().flatten().map(|h| h.cell.pid()).collect()
    }

    /// Per-call settings (chunk size, timeout, retries, progress) for the
    /// operations that follow: `pool.batch().chunksize(100).map(f, args)`.
    pub fn batch(&self) -> Batch<'_> {
        Batch::new(self)
    }

    /// Kills every helper now; queued and running jobs fail with
    /// [`TaskError::Terminated`].
    pub fn terminate(mut self) {
        self.inner.terminate();
        self.join();
    }

    fn join(&mut self) {
        for d in self.drivers.drain(..) {
            let _ = d.join(); // a driver that panicked has nothing left to clean
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.inner.close();
        self.join();
    }
}
