//! The handle every native class but arrays keeps: the core object behind
//! a lock, taken out by `close()` (a later call raises `shmkit.Closed`),
//! and the lifetime methods they all share (`handle_methods!`).

use std::sync::{Arc, RwLock};

use pyo3::prelude::*;

use crate::{errors, owned};

/// A core object until `close()`.
pub(crate) struct Handle<T> {
    slot: RwLock<Option<Arc<T>>>,
    name: String,
    /// The Python class, for messages.
    what: &'static str,
}

impl<T: owned::Owned + 'static> Handle<T> {
    /// The handle of what `made` made or opened, registered for removal at
    /// exit if it owns its segment.
    pub(crate) fn new(made: shmkit::Result<T>, what: &'static str) -> PyResult<Self> {
        Ok(Self::of(made.map_err(errors::core)?, what))
    }

    /// The handle of `inner`, registered as `new` does.
    pub(crate) fn of(inner: T, what: &'static str) -> Self {
        let inner = Arc::new(inner);
        owned::register(&inner);
        Handle { name: inner.name().to_owned(), slot: RwLock::new(Some(inner)), what }
    }

    /// The core object (`shmkit.Closed` after `close()`).
    pub(crate) fn get(&self) -> PyResult<Arc<T>> {
        let slot = self.slot.read().unwrap_or_else(|e| e.into_inner());
        slot.clone().ok_or_else(|| errors::closed(self.what))
    }

    /// The segment's name (kept after `close()`).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// True once closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.slot.read().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    /// Lets the core object go; an owner removes the name first. A second
    /// call does nothing.
    pub(crate) fn close(&self) -> PyResult<()> {
        let inner = self.slot.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = &inner {
            h.release_held();
        }
        match inner {
            Some(h) if h.owns() => h.remove().map_err(errors::core),
            _ => Ok(()),
        }
    }

    /// True if the handle created the segment.
    pub(crate) fn is_owner(&self) -> PyResult<bool> {
        Ok(self.get()?.owns())
    }

    /// Keeps the segment after its creator is gone.
    pub(crate) fn persist(&self) -> PyResult<()> {
        self.get()?.persist().map_err(errors::core)
    }

    /// Removes the name now; the handle stays usable.
    pub(crate) fn remove_name(&self) -> PyResult<()> {
        self.get()?.remove().map_err(errors::core)
    }
}

/// One `#[pymethods]` block for native class `$ty` (whose `Handle` is
/// field `$field`): the lifetime methods every class shares, then the
/// class's own (`$($own)*`). PyO3 takes one block per class (without its
/// `multiple-pymethods` feature), hence a macro wrapping the class's block.
macro_rules! handle_methods {
    // `with handle:` closes it at the end of the block (every class but
    // the locks, whose `with` takes them).
    (closing $ty:ident, $field:ident, { $($own:tt)* }) => {
        handle_methods!($ty, $field, {
            fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
                slf
            }

            #[pyo3(signature = (*_exc))]
            fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
                self.$field.close()?;
                Ok(false)
            }

            $($own)*
        });
    };
    ($ty:ident, $field:ident, { $($own:tt)* }) => {
        #[pymethods]
        impl $ty {
            /// The segment's name.
            #[getter]
            fn name(&self) -> &str {
                self.$field.name()
            }

            /// True if this handle created the segment and removes its
            /// name on `close()`, when collected, or at interpreter exit.
            #[getter]
            fn is_owner(&self) -> PyResult<bool> {
                self.$field.is_owner()
            }

            /// True once `close()` was called.
            #[getter]
            fn closed(&self) -> bool {
                self.$field.is_closed()
            }

            /// Releases the handle; the creating handle removes the name
            /// (other processes' handles stay usable). Harmless twice.
            fn close(&self) -> PyResult<()> {
                self.$field.close()
            }

            /// Keeps the segment after its creator is gone (creators
            /// only); remove it later with `shmkit.remove(name)`.
            fn persist(&self) -> PyResult<()> {
                self.$field.persist()
            }

            /// Removes the segment's name now (creators only); this handle
            /// stays usable.
            fn remove_name(&self) -> PyResult<()> {
                self.$field.remove_name()
            }

            /// Pickles to its name: unpickling opens it by name.
            fn __reduce__<'py>(
                slf: &Bound<'py, Self>,
            ) -> PyResult<(Bound<'py, PyAny>, (&'static str, String))> {
                Ok((slf.get_type().into_any(), ("open", slf.get().$field.name().to_owned())))
            }

            $($own)*
        }
    };
}

pub(crate) use handle_methods;
