//! Names to remove at interpreter exit: every handle that created its
//! segment registers here, and `shmkit`'s `atexit` hook removes the names
//! of those still open (Python does not always collect every object at
//! shutdown, so a `Drop` alone could leave a segment behind). Only the
//! process that created a segment ever removes its name: in a forked
//! child the core refuses (`Inherited`), and nothing is removed.

use std::sync::{Arc, Mutex, Weak};

use pyo3::prelude::*;

/// A handle whose name an owner removes.
pub(crate) trait Owned: Send + Sync {
    /// True if this handle removes its name when dropped or closed.
    fn owns(&self) -> bool;
    /// Removes the name now.
    fn remove(&self) -> shmkit::Result<()>;
    /// Keeps the segment after its creator is gone.
    fn persist(&self) -> shmkit::Result<()>;
    /// The segment's name.
    fn name(&self) -> &str;
    /// What `close()` gives back first: a lock this thread holds.
    fn release_held(&self) {}
}

macro_rules! owned {
    ($($ty:ty),* $(,)?) => {$(
        impl Owned for $ty {
            fn owns(&self) -> bool {
                self.is_owner()
            }
            fn remove(&self) -> shmkit::Result<()> {
                self.remove_name()
            }
            fn persist(&self) -> shmkit::Result<()> {
                self.persist()
            }
            fn name(&self) -> &str {
                self.name()
            }
        }
    )*};
}

owned!(
    shmkit::array::DynArray,
    shmkit::collections::DynMap,
    shmkit::collections::DynVec,
    shmkit::sync::DynQueue,
    shmkit::sync::ShmRwLock<u8>,
    shmkit::sync::ShmEvent,
    shmkit::sync::ShmBarrier,
    shmkit::sync::ShmCounter,
);

impl Owned for shmkit::sync::ShmLock {
    fn owns(&self) -> bool {
        self.is_owner()
    }
    fn remove(&self) -> shmkit::Result<()> {
        self.remove_name()
    }
    fn persist(&self) -> shmkit::Result<()> {
        self.persist()
    }
    fn name(&self) -> &str {
        self.name()
    }
    /// A lock held by this thread is released: after `close()` no call
    /// of this handle could release it, and it would stay held until the
    /// thread ends. (Not held here: nothing to do.)
    fn release_held(&self) {
        let _ = self.release();
    }
}

static OWNED: Mutex<Vec<Weak<dyn Owned>>> = Mutex::new(Vec::new());

/// Registers `handle` if it owns its segment.
pub(crate) fn register<T: Owned + 'static>(handle: &Arc<T>) {
    if handle.owns() {
        let weak: Weak<dyn Owned> = Arc::downgrade(handle) as Weak<dyn Owned>;
        let mut all = OWNED.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0); // forget the ones gone
        all.push(weak);
    }
}

/// Removes the names of every owning handle still alive (the `atexit`
/// hook of `shmkit`). Errors are ignored: a name removed already, or a
/// handle inherited across fork, leave nothing of this process's to do.
#[pyfunction]
pub(crate) fn _remove_owned_names() {
    let all = std::mem::take(&mut *OWNED.lock().unwrap_or_else(|e| e.into_inner()));
    for handle in all.iter().filter_map(Weak::upgrade) {
        if handle.owns() {
            let _ = handle.remove();
        }
    }
}
