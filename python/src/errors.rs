//! shmkit's errors as Python exceptions. The classes live in Python
//! (`shmkit/_errors.py`, one hierarchy under `shmkit.Error`, each also a
//! subclass of the built-in exception it is a case of); this maps each
//! Rust error to its class, keeping the Rust message, which says what to
//! do.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use shmkit::collections::{MapError, PushError};
use shmkit::sync::{AcquireError, NotHeld, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
use shmkit::Error;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// Exception class `name` of `shmkit._errors`.
pub(crate) fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    let module = ERRORS.get_or_try_init(py, || py.import("shmkit._errors").map(Bound::unbind))?;
    module.bind(py).getattr(name)?.cast_into::<PyType>().map_err(Into::into)
}

/// An exception of class `name` with `message`.
pub(crate) fn raise(name: &str, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| match class(py, name) {
        Ok(ty) => PyErr::from_type(ty, message),
        Err(e) => PyRuntimeError::new_err(format!("{message} (and shmkit._errors.{name} could not be loaded: {e})")),
    })
}

/// The class of each `shmkit::Error` variant.
fn class_of(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "NotFound",
        Error::AlreadyExists { .. } => "AlreadyExists",
        Error::InvalidName { .. } | Error::NameTooLong { .. } => "InvalidName",
        Error::PermissionDenied { .. } | Error::Untrusted { .. } => "PermissionDenied",
        Error::NoSpace { .. } => "NoSpace",
        Error::TooManyFiles { .. } | Error::TooManyMappings { .. } | Error::TooManyHandles { .. } => "LimitReached",
        Error::TooSmall { .. } | Error::BadHeader { .. } | Error::NotAnArray { .. } | Error::OlderVersion { .. } => {
            "BadSegment"
        }
        Error::WrongDtype { .. }
        | Error::WrongNdim { .. }
        | Error::WrongShape { .. }
        | Error::WrongKind { .. }
        | Error::WrongType { .. } => "WrongType",
        Error::SizeOverflow { .. } | Error::OutOfRange { .. } | Error::InvalidArgument(_) => "InvalidArgument",
        Error::NotOwner { .. } | Error::Replaced { .. } => "NotOwner",
        Error::Inherited { .. } => "Inherited",
        Error::Busy { .. } => "Busy",
        _ => "IoError",
    }
}

/// A `shmkit::Error` as its Python exception.
pub(crate) fn core(e: Error) -> PyErr {
    raise(class_of(&e), e.to_string())
}

/// A map error as its Python exception.
pub(crate) fn map(e: MapError) -> PyErr {
    let class = match &e {
        MapError::Full { .. } => "Full",
        MapError::LockTimeout { .. } => "Timeout",
        MapError::InModify | MapError::Deadlock { .. } => "Deadlock",
        MapError::WrongLength { .. } => "InvalidArgument",
        _ => "Broken",
    };
    raise(class, e.to_string())
}

/// A list's push error as its Python exception.
pub(crate) fn push<T>(e: PushError<T>) -> PyErr {
    let class = match &e {
        PushError::Full { .. } => "Full",
        PushError::TooManyPushers { .. } => "LimitReached",
        PushError::Inherited { .. } => "Inherited",
        _ => "InvalidArgument",
    };
    raise(class, e.to_string())
}

/// A bare lock's acquire error (but `OwnerDied`, which carries the lock:
/// see `sync`).
pub(crate) fn acquire(e: AcquireError) -> PyErr {
    let class = match e {
        AcquireError::Timeout => "Timeout",
        AcquireError::Deadlock => "Deadlock",
        AcquireError::Inherited => "Inherited",
        AcquireError::Unrecoverable | AcquireError::OwnerDied => "Broken",
    };
    raise(class, e.to_string())
}

/// Releasing a lock this thread does not hold.
pub(crate) fn not_held(e: NotHeld) -> PyErr {
    raise("NotHeld", e.to_string())
}

/// The class of a queue's end of stream, or of its other failures.
macro_rules! queue_error {
    ($name:ident, $ty:ty, { $($variant:pat => $class:expr),* $(,)? }) => {
        pub(crate) fn $name(e: $ty) -> PyErr {
            let class = match &e { $($variant => $class),* };
            raise(class, e.to_string())
        }
    };
}

queue_error!(try_send, TrySendError<()>, {
    TrySendError::Full(_) => "Full",
    TrySendError::Stalled(_) => "Stalled",
    TrySendError::Shutdown(_) => "ShutDown",
    TrySendError::Disconnected(_) => "Disconnected",
    TrySendError::Inherited(_) => "Inherited",
    TrySendError::Broken(_) => "Broken",
});
queue_error!(send_timeout, SendTimeoutError<()>, {
    SendTimeoutError::Timeout(_) => "Full",
    SendTimeoutError::Shutdown(_) => "ShutDown",
    SendTimeoutError::Disconnected(_) => "Disconnected",
    SendTimeoutError::Inherited(_) => "Inherited",
    SendTimeoutError::Broken(_) => "Broken",
});
queue_error!(try_recv, TryRecvError, {
    TryRecvError::Empty => "Empty",
    TryRecvError::Stalled => "Stalled",
    TryRecvError::Shutdown => "ShutDown",
    TryRecvError::Disconnected => "Disconnected",
    TryRecvError::Inherited => "Inherited",
    TryRecvError::Broken => "Broken",
});
queue_error!(recv_timeout, RecvTimeoutError, {
    RecvTimeoutError::Timeout => "Empty",
    RecvTimeoutError::Shutdown => "ShutDown",
    RecvTimeoutError::Disconnected => "Disconnected",
    RecvTimeoutError::Inherited => "Inherited",
    RecvTimeoutError::Broken => "Broken",
});

/// A handle used after `close()`.
pub(crate) fn closed(what: &str) -> PyErr {
    raise("Closed", format!("this {what} handle is closed: open the segment again by name"))
}
