//! What map and list operations can fail with: small enums, each variant
//! possible for the calls that return it.

use std::time::Duration;

/// Why a [`ShmMap`](super::ShmMap) operation did not happen (it changed
/// nothing).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// `insert` or `modify` of a new key: the key's stripe has no free
    /// slot. Create the map with a larger capacity.
    #[error("map '{name}' is full: the stripe of this key ({stripe} of {stripes}) has all its {slots} slots in use (capacity {capacity}); create it with a larger capacity")]
    Full {
        /// The map.
        name: String,
        /// The stripe that ran out.
        stripe: usize,
        /// Stripes in the map.
        stripes: usize,
        /// Slots per stripe.
        slots: usize,
        /// The capacity asked for at create.
        capacity: usize,
    },
    /// The stripe's lock stayed held past the handle's lock timeout (see
    /// [`ShmMap::with_lock_timeout`](super::ShmMap::with_lock_timeout)):
    /// another process holds it, most likely stopped.
    #[error("map '{name}': stripe {stripe} stayed locked by another process for {limit:?} (a stopped process?); the operation was not done")]
    LockTimeout {
        /// The map.
        name: String,
        /// The stripe.
        stripe: usize,
        /// The timeout.
        limit: Duration,
    },
    /// Called from inside an `modify` closure, which holds a stripe lock:
    /// it could deadlock.
    #[error("a ShmMap's modify closure may not use a ShmMap (it holds a stripe lock); compute before or after")]
    InModify,
    /// This thread already holds the stripe's lock (robust locks name
    /// their holder by thread id: a process in another PID namespace
    /// sharing `/dev/shm` may hold it under this thread's id).
    #[error("map '{name}': this thread already holds the lock of stripe {stripe} (or a process in another PID namespace holds it under the same thread id)")]
    Deadlock {
        /// The map.
        name: String,
        /// The stripe.
        stripe: usize,
    },
    /// A key or value of the wrong number of bytes for the map's dtypes
    /// ([`DynMap`](super::DynMap) only: `ShmMap`'s types have the size).
    #[error("map '{name}': a {what} of {found} bytes, but its dtype takes {expected}")]
    WrongLength {
        /// The map.
        name: String,
        /// `"key"` or `"value"`.
        what: &'static str,
        /// Bytes the dtype takes.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// The stripe's lock was overwritten by another process; the map can
    /// no longer be used safely.
    #[error("map '{name}': the lock of stripe {stripe} is unusable (another process wrote over it); copy what you can with snapshot() into a new map")]
    Unrecoverable {
        /// The map.
        name: String,
        /// The stripe.
        stripe: usize,
    },
}

/// Why [`ShmVec::push`](super::ShmVec::push) did not append (nothing was).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError<T> {
    /// Every slot is taken.
    #[error("list '{name}' is full: all its {capacity} slots are taken; create it with a larger capacity")]
    Full {
        /// The list.
        name: String,
        /// Its capacity.
        capacity: usize,
        /// The element that was not pushed.
        value: T,
    },
    /// Every pusher place is held (1024 handles push at once).
    #[error("list '{name}': {max} handles push to it already; drop one first")]
    TooManyPushers {
        /// The list.
        name: String,
        /// Most pushing handles at once.
        max: usize,
        /// The element that was not pushed.
        value: T,
    },
    /// An element of the wrong number of bytes for the list's dtype
    /// ([`DynVec`](super::DynVec) only).
    #[error("list '{name}': an element of {found} bytes, but its dtype takes {expected}")]
    WrongLength {
        /// The list.
        name: String,
        /// Bytes the dtype takes.
        expected: usize,
        /// Bytes given.
        found: usize,
        /// The element that was not pushed.
        value: T,
    },
    /// The handle was inherited across `fork` (see [`Error::Inherited`](crate::Error::Inherited)).
    #[error("this handle of list '{name}' was inherited across fork: open it again by name in this process")]
    Inherited {
        /// The list.
        name: String,
        /// The element that was not pushed.
        value: T,
    },
}

impl<T> PushError<T> {
    /// The element that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full { value, .. }
            | PushError::TooManyPushers { value, .. }
            | PushError::WrongLength { value, .. }
            | PushError::Inherited { value, .. } => value,
        }
    }

    /// The same error, handing back `value` instead.
    pub(crate) fn with_value<U>(self, value: U) -> PushError<U> {
        match self {
            PushError::Full { name, capacity, .. } => PushError::Full { name, capacity, value },
            PushError::TooManyPushers { name, max, .. } => PushError::TooManyPushers { name, max, value },
            PushError::WrongLength { name, expected, found, .. } => {
                PushError::WrongLength { name, expected, found, value }
            }
            PushError::Inherited { name, .. } => PushError::Inherited { name, value },
        }
    }
}
