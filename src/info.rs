//! What a segment is, without knowing its type: `inspect`, and removal by name.

use std::sync::atomic::Ordering;

use rustix::fd::AsFd;

use crate::kind::SegmentKind;
use crate::segment::liveness::{self, Presence};
use crate::segment::{probe, read_trailer, Layout, Segment, FLAG_PERSISTENT};
use crate::{name, os, Error, Result};

/// What a segment's header and trailer say, validated against its length.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// Segment name or file path.
    pub name: String,
    /// What the segment holds.
    pub kind: SegmentKind,
    /// Bytes in the whole segment or file.
    pub total_len: usize,
    /// Where the data (elements, or a primitive's body) starts.
    pub data_offset: usize,
    /// Bytes of data.
    pub data_len: usize,
    /// The `.npy` header of an array.
    pub array: Option<ArrayHeader>,
    /// The process that created the segment, if shmkit did.
    pub creator: Option<Creator>,
    /// Kept on purpose past its owner ([`SharedArray::persist`](crate::SharedArray::persist)).
    pub persistent: bool,
    /// Entries and capacity of a map or list segment.
    pub collection: Option<crate::collections::CollectionInfo>,
    /// What a segment that is not an array holds, as numpy dtypes:
    /// `("value", "<u8")`, `("key", "|S24")`, ...
    pub types: Vec<(String, String)>,
}

/// An array segment's `.npy` header.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArrayHeader {
    /// The numpy dtype string, e.g. `"<f8"`.
    pub dtype: String,
    /// Length of each axis.
    pub shape: Vec<usize>,
    /// Column-major element order.
    pub fortran: bool,
}

/// The process that created a segment, as recorded in it, and whether its
/// handle is still open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Creator {
    /// Process id, in the creator's PID namespace.
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// Inode of the creator's PID namespace: its pid means something only
    /// where this matches ([`Creator::in_this_namespace`]).
    pub pid_namespace: u64,
    /// Whether the creating handle is still open, read from the lock its
    /// creator holds (never from the pid).
    pub presence: Presence,
}

impl Creator {
    /// True while the creating handle is open in a running process.
    pub fn is_alive(&self) -> bool {
        self.presence == Presence::Alive
    }

    /// True if the creator ran in this process's PID namespace, so its pid
    /// names a process here.
    pub fn in_this_namespace(&self) -> bool {
        self.pid_namespace == os::pid_namespace()
    }
}

/// Reads segment `name`'s header and trailer without knowing its type,
/// and whether its creator is alive.
///
/// ```
/// # let name = format!("doc-inspect-{}", std::process::id());
/// let a = shmkit::SharedArray::<i32, _>::create(&name, (4, 5))?;
/// let info = shmkit::inspect(&name)?;
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

/// The [`SegmentInfo`] of the segment open at `fd`.
pub(crate) fn describe(fd: impl AsFd, name: &str) -> Result<SegmentInfo> {
    let layout = probe(&fd, name)?;
    let presence = liveness::presence(&fd, liveness::CREATOR);
    let mut info = info_of(name, &layout, presence, read_flags(&fd, &layout));
    info.collection = crate::collections::summary(&fd, &layout);
    Ok(info)
}

/// The trailer's flags word now (it changes after creation).
pub(crate) fn read_flags(fd: impl AsFd, layout: &Layout) -> u32 {
    match layout.trailer {
        Some(t) => read_trailer(fd).map_or(t.flags, |now| now.flags),
        None => 0,
    }
}

fn info_of(name: &str, layout: &Layout, presence: Presence, flags: u32) -> SegmentInfo {
    let array = layout.header.as_ref().map(|h| ArrayHeader {
        dtype: h.descr.clone(),
        shape: h.shape.clone(),
        fortran: h.fortran,
    });
    SegmentInfo {
        name: name.to_owned(),
        kind: layout.kind,
        total_len: layout.total_len,
        data_offset: layout.data_offset,
        data_len: layout.data_len,
        array,
        creator: layout.trailer.map(|t| Creator {
            pid: t.pid,
            start_time: t.start_time,
            pid_namespace: t.pid_namespace,
            presence,
        }),
        persistent: layout.trailer.is_some() && flags & FLAG_PERSISTENT != 0,
        collection: None,
        types: layout.types.clone(),
    }
}

impl Segment {
    /// This segment's [`SegmentInfo`], read again now.
    pub(crate) fn info(&self) -> Result<SegmentInfo> {
        let flags = match self.layout().trailer {
            Some(_) => self.atomic_flags().load(Ordering::Acquire),
            None => 0,
        };
        let layout = probe(self.fd(), self.name())?;
        // An open file never sees its own locks: the creator knows it is alive.
        let presence = match self.is_creator() {
            true => Presence::Alive,
            false => liveness::presence(self.fd(), liveness::CREATOR),
        };
        Ok(info_of(self.name(), &layout, presence, flags))
    }
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
        Ok(_) => return Err(Error::NotAnArray { name: name.to_owned() }), // a plain .npy: not shmkit's
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
