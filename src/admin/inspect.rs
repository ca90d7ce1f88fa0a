//! `inspect` and removal by name: what a segment is, without knowing its
//! type, and removing one.

use crate::segment::info::{describe as describe_segment, SegmentInfo};
use crate::segment::probe;
use crate::{name, os, Error, Result};

/// Reads segment `name`'s header and trailer without knowing its type,
/// and whether its creator is alive.
///
/// ```
/// # let name = format!("shmkit-doc-inspect-{}", std::process::id());
/// let a = shmkit::SharedArray::<i32, _>::create(&name, (4, 5))?;
/// let info = shmkit::admin::inspect(&name)?;
/// let header = info.array.unwrap();
/// assert_eq!((header.dtype.as_str(), header.shape.as_slice()), ("<i4", &[4, 5][..]));
/// assert!(info.creator.unwrap().is_alive());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn inspect(name: &str) -> Result<SegmentInfo> {
    let name = name::validate(name)?;
    let dir = os::shm_dir().map_err(Error::shm_dir)?;
    let fd = os::open_at(dir, name).map_err(|e| Error::from_io("open", name, e))?;
    describe(&fd, name)
}

/// The [`SegmentInfo`] of the segment open at `fd`, with a map's, list's
/// or stream's summary.
pub(crate) fn describe(fd: impl rustix::fd::AsFd, name: &str) -> Result<SegmentInfo> {
    let mut info = describe_segment(&fd, name)?;
    if matches!(info.kind, crate::kind::SegmentKind::Map | crate::kind::SegmentKind::List) {
        let layout = probe(&fd, name)?;
        info.collection = crate::collections::summary(&fd, &layout);
    }
    if info.kind == crate::kind::SegmentKind::Stream {
        info.stream = crate::stream::summary(name);
    }
    Ok(info)
}

/// Removes the shmkit segment `name` leads to: it must be one shmkit made
/// (this or an older version), and only that segment is removed, never a
/// namesake that took the name meanwhile ([`Error::Replaced`]). For
/// segments kept with [`persist`](crate::SharedArray::persist), or left by
/// a crashed owner; processes that have it mapped keep their mapping.
pub fn remove(name: &str) -> Result<()> {
    let name = name::validate(name)?;
    let dir = os::shm_dir().map_err(Error::shm_dir)?;
    let fd = os::open_at(dir, name).map_err(|e| Error::from_io("open", name, e))?;
    match probe(&fd, name) {
        Ok(layout) if layout.trailer.is_some() => {}
        Ok(_) => {
            return Err(Error::InvalidArgument(format!(
                "'{name}' is a .npy file that shmkit did not make, so `remove` leaves it alone: remove it \
                 with `shmkit rm --force {name}` (shmkit::admin::unlink) if no one uses it"
            )))
        }
        Err(Error::OlderVersion { .. }) => {}
        Err(e) => return Err(e),
    }
    let id = os::stat(&fd).map_err(|e| Error::from_io("fstat", name, e))?.id;
    crate::segment::remove_named(name, id)
}

/// Removes entry `name` of `/dev/shm` whatever it is (`unlink(2)`, what
/// `shm_unlink(3)` does). Prefer [`remove`], which touches only shmkit's
/// segments and never a namesake. Processes that have it mapped keep
/// their mapping.
pub fn unlink(name: &str) -> Result<()> {
    let name = name::validate(name)?;
    let dir = os::shm_dir().map_err(Error::shm_dir)?;
    os::unlink_at(dir, name).map_err(|e| Error::from_io("unlink", name, e))
}
