//! What a segment is, as its header and trailer say: `SegmentInfo`, read
//! through an open file without knowing the segment's type.

use std::sync::atomic::Ordering;

use rustix::fd::AsFd;

use super::liveness::{self, Presence};
use super::{probe, read_trailer, Layout, Segment, FLAG_PERSISTENT};
use crate::kind::SegmentKind;
use crate::{os, Result};

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
    pub collection: Option<CollectionInfo>,
    /// A stream's state, for `Stream` segments (from [`inspect`](crate::admin::inspect)
    /// and [`list`](crate::admin::list)).
    pub stream: Option<StreamInfo>,
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

/// What `shmkit ls` and `inspect` show of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamInfo {
    /// Slots (samples the segment holds).
    pub slots: usize,
    /// Most subscribers at once.
    pub subscribers: usize,
    /// Subscribers whose process is alive now.
    pub subscribers_alive: usize,
    /// The newest sample's sequence number (0: none yet).
    pub newest: u64,
    /// `"block (lag limit 1s)"` or `"overwrite"`.
    pub policy: String,
    /// True while its publisher's process lives.
    pub publisher_alive: bool,
    /// True once the publisher ended it normally.
    pub ended: bool,
}

/// What `shmkit inspect` shows of a map or list.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CollectionInfo {
    /// Entries (a map) or claimed slots (a list) when read.
    pub len: u64,
    /// The capacity asked for at create.
    pub capacity: u64,
    /// Repairs after a process died mid-operation (maps).
    pub recoveries: u64,
}

/// The [`SegmentInfo`] of the segment open at `fd` (without a
/// collection's summary, which `admin` adds).
pub(crate) fn describe(fd: impl AsFd, name: &str) -> Result<SegmentInfo> {
    let layout = probe(&fd, name)?;
    let presence = liveness::presence(&fd, liveness::CREATOR);
    Ok(info_of(name, &layout, presence, read_flags(&fd, &layout)))
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
        stream: None,
        types: layout.types.clone(),
    }
}

impl Segment {
    /// This segment's [`SegmentInfo`], read again now.
    pub(crate) fn info(&self) -> Result<SegmentInfo> {
        self.check_process()?; // a forked child's descriptor is /dev/null (see `inherit`)
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

/// True if segment `name` is shmkit's, not persistent, and its creator is
/// gone: garbage a crashed run left (for `Error::AlreadyExists`'s advice).
pub(crate) fn creator_gone(name: &str) -> bool {
    let Ok(dir) = os::shm_dir() else { return false };
    let Ok(fd) = os::open_at(dir, name) else { return false };
    describe(&fd, name)
        .is_ok_and(|i| !i.persistent && i.creator.is_some_and(|c| c.presence == liveness::Presence::Gone))
}
