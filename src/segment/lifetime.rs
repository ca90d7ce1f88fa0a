//! The lifetime API every handle shares (arrays, locks, queues, maps,
//! lists, streams), written once: `name`, `is_owner`, `persist`,
//! `remove_name` and `close`.
//!
//! The rules: the handle that created a segment owns it and removes its
//! name when dropped or closed (only if the name still leads to this
//! segment, and only in the process that made the handle, never in a
//! forked child); handles that opened it only unmap; `persist` keeps it
//! past its owner, until `shmkit rm` or [`admin::remove`](crate::admin::remove).

use super::Segment;

/// A handle over a segment (see [`lifetime_api`]).
pub(crate) trait HasSegment {
    /// The handle's segment.
    fn segment(&self) -> &Segment;
}

/// Implements [`HasSegment`] through `$get` and the lifetime API for a
/// type: `lifetime_api!(|s| &s.seg; impl[T: Record] ShmMutex<T>);`.
macro_rules! lifetime_api {
    (|$s:ident| $get:expr; impl[$($gen:tt)*] $ty:ty) => {
        impl<$($gen)*> $ty {
            /// The segment's name (a file's path, for a file-backed array).
            pub fn name(&self) -> &str {
                crate::segment::HasSegment::segment(self).name()
            }

            /// True if this handle created the segment and removes its name
            /// when dropped or closed: never in a child forked from the
            /// creator, whose copy leaves the name alone.
            pub fn is_owner(&self) -> bool {
                crate::segment::HasSegment::segment(self).owns_here()
            }

            /// Keeps the segment after this handle is gone: marks it
            /// persistent (so `shmkit gc` spares it) and gives up the right
            /// to remove its name. Remove it later with [`admin::remove`](crate::admin::remove)
            /// or `shmkit rm`. Only the creating handle may
            /// ([`Error::NotOwner`](crate::Error::NotOwner)); calling it
            /// twice is harmless.
            pub fn persist(&self) -> crate::Result<()> {
                crate::segment::HasSegment::segment(self).persist()
            }

            /// Removes the segment's name now (owners only:
            /// [`Error::NotOwner`](crate::Error::NotOwner); and only while
            /// the name leads to this segment:
            /// [`Error::Replaced`](crate::Error::Replaced)). This handle and
            /// every other stay usable; no one can open it by name again.
            pub fn remove_name(&self) -> crate::Result<()> {
                crate::segment::HasSegment::segment(self).remove_name()
            }

            /// Closes the handle, reporting what dropping it would ignore:
            /// an owner removes the name (an error if it was removed or
            /// replaced already), then the segment is unmapped here (once
            /// every view, guard and role handle made from it is gone).
            pub fn close(self) -> crate::Result<()> {
                let result = crate::segment::HasSegment::segment(&self).close_name();
                drop(self);
                result
            }
        }

        impl<$($gen)*> crate::segment::HasSegment for $ty {
            fn segment(&self) -> &crate::segment::Segment {
                let $s = self;
                $get
            }
        }
    };
}
pub(crate) use lifetime_api;
