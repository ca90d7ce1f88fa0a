//! What taking a lock can end in, one type per form: `lock` (blocking),
//! `try_lock` and `lock_timeout`, each with only the outcomes its form can
//! have, as crossbeam-channel's errors. `G` is the guard: a lock whose
//! holder died is handed over, in [`OwnerDied`], to be repaired.

use std::fmt;

use super::raw::Failed;

/// A lock whose previous holder died holding it: the lock is yours, but
/// the data may be half-updated. Check (and repair) it through
/// [`guard`](Self::guard), then [`acknowledge`](Self::acknowledge).
/// Dropping it unacknowledged releases the lock with the death still
/// reported: the next locker gets `OwnerDied` too, until someone
/// acknowledges.
pub struct OwnerDied<G> {
    guard: G,
    /// Marks the data consistent again, through the guard (which keeps
    /// the lock held and its mapping alive while it runs).
    recover: fn(&G),
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G, recover: fn(&G)) -> Self {
        OwnerDied { guard, recover }
    }

    /// Declares the protected data consistent again and returns the guard;
    /// the lock stays usable for everyone.
    pub fn acknowledge(self) -> G {
        (self.recover)(&self.guard);
        self.guard
    }

    /// The guard, to inspect or repair the data before acknowledging.
    pub fn guard(&mut self) -> &mut G {
        &mut self.guard
    }
}

/// What a lock call of any form can end in, inside the crate.
pub(crate) enum Refused<G> {
    OwnerDied(OwnerDied<G>),
    WouldBlock,
    Timeout,
    Unrecoverable,
    Deadlock,
    Inherited,
}

impl<G> From<Failed> for Refused<G> {
    fn from(f: Failed) -> Self {
        match f {
            Failed::WouldBlock => Refused::WouldBlock,
            Failed::Timeout => Refused::Timeout,
            Failed::Unrecoverable => Refused::Unrecoverable,
            Failed::Deadlock => Refused::Deadlock,
        }
    }
}

const OWNER_DIED: &str = "the previous holder died holding the lock; check the data, then acknowledge";
const UNRECOVERABLE: &str = "the lock is unusable: another process wrote over it; make a new one";
const DEADLOCK: &str = "this thread already holds the lock (or reads it, and asked to write): it would wait for itself";
const INHERITED: &str = "this handle was inherited across fork: open the lock again by name in this process";

macro_rules! lock_error {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $extra:ident => $text:expr),* }) => {
        $(#[$doc])*
        pub enum $name<G> {
            /// The previous holder died holding the lock; it is handed over
            /// to be repaired (see [`OwnerDied`]).
            OwnerDied(OwnerDied<G>),
            $($(#[$vdoc])* $extra,)*
            /// The lock cannot be used again: another process wrote over
            /// its memory.
            Unrecoverable,
            /// This thread already holds the lock (or, asking a
            /// reader-writer lock to write, reads it): it would wait for itself.
            Deadlock,
            /// This handle was inherited across `fork`: a forked child
            /// shares its parent's open file, whose locks cannot tell the
            /// two apart. Open the lock again by name in the child.
            Inherited,
        }

        impl<G> $name<G> {
            /// True for `OwnerDied`.
            pub fn is_owner_died(&self) -> bool {
                matches!(self, $name::OwnerDied(_))
            }

            pub(crate) fn from_refused(r: Refused<G>) -> Self {
                match r {
                    Refused::OwnerDied(d) => $name::OwnerDied(d),
                    $(Refused::$extra => $name::$extra,)*
                    Refused::Unrecoverable => $name::Unrecoverable,
                    Refused::Deadlock => $name::Deadlock,
                    Refused::Inherited => $name::Inherited,
                    #[allow(unreachable_patterns)] // the forms that can have every outcome
                    _ => unreachable!("a {} call cannot end so", stringify!($name)),
                }
            }
        }

        impl<G> fmt::Debug for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $name::OwnerDied(_) => "OwnerDied(..)",
                    $($name::$extra => stringify!($extra),)*
                    $name::Unrecoverable => "Unrecoverable",
                    $name::Deadlock => "Deadlock",
                    $name::Inherited => "Inherited",
                })
            }
        }

        impl<G> fmt::Display for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $name::OwnerDied(_) => OWNER_DIED,
                    $($name::$extra => $text,)*
                    $name::Unrecoverable => UNRECOVERABLE,
                    $name::Deadlock => DEADLOCK,
                    $name::Inherited => INHERITED,
                })
            }
        }

        impl<G> std::error::Error for $name<G> {}
    };
}

lock_error!(
    /// Why a blocking `lock`, `read` or `write` did not hand the lock over normally.
    LockError {}
);

lock_error!(
    /// Why a `try_lock`, `try_read` or `try_write` did not hand the lock over normally.
    TryLockError {
        /// Someone else holds it now.
        WouldBlock => "the lock is held by someone else"
    }
);

lock_error!(
    /// Why a `lock_timeout`, `read_timeout` or `write_timeout` did not hand
    /// the lock over normally.
    LockTimeoutError {
        /// Not free in time.
        Timeout => "the lock was not free in time"
    }
);
