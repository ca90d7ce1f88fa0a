//! # shmkit
//!
//! Numeric compute over named shared memory.
//!
//! A coordinator creates named segments holding n-dimensional arrays; any
//! process attaches by name alone, because shape and dtype live in the
//! segment. Each segment is a valid `.npy` file, so numpy maps it too. The
//! owner's handle unlinks the segment; an attacher's handle only unmaps.
//!
//! ```
//! use shmkit::SharedArray;
//! # let name = format!("shmkit-doc-lib-{}", std::process::id());
//! let mut data = SharedArray::<f64, ndarray::Ix1>::create(&name, 1000)?;
//! data.as_slice_mut()?.iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
//!
//! // In another process (here the same one), by name alone:
//! let mut helper = SharedArray::<f64, ndarray::Ix1>::open(&name)?;
//! helper.rows_mut(0..500)?.mapv_inplace(|x| 2.0 * x);
//! drop(helper); // its claim on rows 0..500 goes with it
//! assert_eq!(data.as_slice()?[499], 998.0);
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! The rest of the crate builds on that:
//!
//! - [`Pool`] (module [`pool`]): helper processes (this executable again,
//!   or a helper binary; never a fork) that run registered tasks over
//!   arrays' rows in place, map arguments, or run submitted tasks as
//!   [`TaskHandle`](pool::TaskHandle)s (also `Future`s). A helper that
//!   crashes or times out fails only its task
//!   ([`TaskError::WorkerDied`](pool::TaskError::WorkerDied),
//!   [`TaskError::TimedOut`](pool::TaskError::TimedOut)) and is replaced.
//! - [`sync`]: a robust mutex, reader-writer lock, event, barrier, counter
//!   and bounded queue, each in a named segment, each surviving the death
//!   of a process that held it.
//! - [`collections`]: `ShmMap` (a hash map) and `ShmVec` (an append-only
//!   list) in named segments, Python's `Manager().dict()` and `.list()`
//!   without a server; a process dying mid-operation corrupts neither.
//! - `mpi` (feature `mpi`): arrays distributed over the nodes of an MPI
//!   job, one segment per node shared by that node's ranks.
//! - [`admin`]: list, inspect, remove and garbage-collect segments (the
//!   `shmkit` command of the `shmkit-cli` crate does the same from a
//!   shell), and [`doctor`](admin::doctor) for the host's limits.
//!
//! Linux only for now: segments live in `/dev/shm`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("shmkit supports Linux only for now (segments live in /dev/shm)");
#[cfg(not(target_pointer_width = "64"))]
compile_error!("shmkit needs a 64-bit target (64-bit file offsets for its lock bytes, 64-bit lengths)");
#[cfg(not(target_endian = "little"))]
compile_error!("shmkit writes little-endian .npy headers and needs a little-endian host");

pub mod admin;
pub mod array;
pub mod collections;
mod error;
mod fault;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod kind;
#[cfg(feature = "mpi")]
pub mod mpi;
mod name;
mod npy;
#[cfg_attr(target_os = "linux", path = "os/linux.rs")]
mod os;
pub mod pool;
pub mod prelude;
mod role;
mod segment;
pub mod stream;
pub mod sync;

pub use crate::array::SharedArray;
pub use crate::error::{Error, Result};
pub use crate::npy::dtype::{DType, Element};
#[doc(hidden)]
pub use crate::npy::record::{__back_to_back, __is_record, __struct_dtype};
pub use crate::npy::record::{FixedStr, Record, StrTooLong};
pub use crate::pool::{init, serve, Pool, Registry};
pub use bytemuck;
pub use ndarray;

/// The README's and the guides' Rust snippets, compiled and run as
/// doctests so that none goes stale.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/arrays.md")]
    struct Arrays;
    #[doc = include_str!("../docs/pool.md")]
    struct Pool;
    #[doc = include_str!("../docs/sync.md")]
    struct Sync;
    #[doc = include_str!("../docs/collections.md")]
    struct Collections;
    #[doc = include_str!("../docs/admin.md")]
    struct Admin;
    #[cfg(feature = "mpi")]
    #[doc = include_str!("../docs/mpi.md")]
    struct Mpi;
}
