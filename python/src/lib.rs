//! `shmkit._shmkit`: the native half of the `shmkit` Python package. A
//! thin layer: it converts between Python and the dtype-erased core
//! (`DynArray`, `DynMap`, `DynVec`, `DynQueue`, the primitives) and
//! delegates; the Python half (`pysrc/shmkit`) holds the public names,
//! the exception classes and the `collections.abc` mixins.

#![deny(unsafe_op_in_unsafe_fn)]

mod admin;
mod array;
mod blocking;
mod codec;
mod collections;
mod errors;
mod handle;
mod message;
mod owned;
mod pool;
mod queue;
mod stream;
mod sync;

use pyo3::prelude::*;

/// The native module; `shmkit/__init__.py` re-exports what is public.
#[pymodule]
mod _shmkit {
    #[pymodule_export]
    use super::admin::{doctor, gc, inspect, ls, remove, unlink};
    #[pymodule_export]
    use super::array::{_create, _create_file, _create_from, _create_unique, _open, _open_file, Claim, SharedArray};
    #[pymodule_export]
    use super::collections::{Dict, List};
    #[pymodule_export]
    use super::message::{_message, Outgoing};
    #[pymodule_export]
    use super::owned::_remove_owned_names;
    #[pymodule_export]
    use super::pool::{_prepare_helper, _serve, PyPool};
    #[pymodule_export]
    use super::queue::Queue;
    #[pymodule_export]
    use super::stream::{PyLoan, PyPublisher, PySample, PySubscriber};
    #[pymodule_export]
    use super::sync::{Barrier, Counter, Event, Lock, RwGuard, RwLockHandle};
}
