//! Reading a segment's header without knowing its type; removing by name.

use std::sync::atomic::Ordering;

use crate::layout::{
    self, Header, HeaderError, Trailer, FLAG_PERSISTENT, MAGIC, MAX_HEADER, TRAILER_FLAGS, TRAILER_LEN,
};
use crate::segment::Mapping;
use crate::{name, os, Error, Result};

/// What a segment's header and trailer say, validated against its length.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArrayInfo {
    /// Segment name or file path.
    pub name: String,
    /// The numpy dtype string, e.g. `"<f8"`.
    pub dtype: String,
    /// Length of each axis.
    pub shape: Vec<usize>,
    /// Column-major element order.
    pub fortran: bool,
    /// Where the element data starts (a multiple of 64 for shmkit segments).
    pub data_offset: usize,
    /// Bytes of element data.
    pub data_len: usize,
    /// Bytes in the whole segment or file.
    pub total_len: usize,
    /// The process that created the segment, if shmkit did.
    pub creator: Option<Creator>,
    /// Kept on purpose past its owner ([`SharedArray::persist`](crate::SharedArray::persist)).
    pub persistent: bool,
    /// What the segment holds: an array, or a lock, queue, ... of `shmkit::sync`.
    pub kind: SegmentKind,
    pub(crate) trailer: Option<Trailer>,
}

/// What a shmkit segment holds, as its trailer records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SegmentKind {
    /// An n-dimensional array (also any plain `.npy`).
    Array,
    /// A [`ShmMutex`](crate::sync::ShmMutex).
    Mutex,
    /// A [`ShmRwLock`](crate::sync::ShmRwLock).
    RwLock,
    /// A [`ShmEvent`](crate::sync::ShmEvent).
    Event,
    /// A [`ShmBarrier`](crate::sync::ShmBarrier).
    Barrier,
    /// A [`ShmCounter`](crate::sync::ShmCounter).
    Counter,
    /// A [`ShmQueue`](crate::sync::ShmQueue).
    Queue,
    /// A kind this version does not know.
    Unknown(u32),
}

impl SegmentKind {
    /// The number stored in the trailer.
    pub(crate) fn code(self) -> u32 {
        match self {
            SegmentKind::Array => 0,
            SegmentKind::Mutex => 1,
            SegmentKind::RwLock => 2,
            SegmentKind::Event => 3,
            SegmentKind::Barrier => 4,
            SegmentKind::Counter => 5,
            SegmentKind::Queue => 6,
            SegmentKind::Unknown(n) => n,
        }
    }

    pub(crate) fn from_code(code: u32) -> SegmentKind {
        [Self::Array, Self::Mutex, Self::RwLock, Self::Event, Self::Barrier, Self::Counter, Self::Queue]
            .into_iter()
            .find(|k| k.code() == code)
            .unwrap_or(SegmentKind::Unknown(code))
    }
}

impl std::fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentKind::Unknown(n) => write!(f, "kind-{n}"),
            other => write!(f, "{}", format!("{other:?}").to_lowercase()),
        }
    }
}

/// The process that created a segment: its pid and start time, which
/// together name it even after the pid is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Creator {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

impl Creator {
    /// True while the creating process is still running.
    pub fn is_alive(&self) -> bool {
        os::process_start_time(self.pid) == Some(self.start_time)
    }
}

/// Reads segment `name`'s header without knowing its element type.
///
/// ```
/// # let name = format!("doc-inspect-{}", std::process::id());
/// let a = shmkit::SharedArray::<i32, _>::create(&name, (4, 5))?;
/// let info = shmkit::inspect(&name)?;
/// assert_eq!((info.dtype.as_str(), info.shape.as_slice()), ("<i4", &[4, 5][..]));
/// assert!(info.creator.unwrap().is_alive());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn inspect(name: &str) -> Result<ArrayInfo> {
    ArrayInfo::read(&Mapping::open_shm(name::validate(name)?)?)
}

/// Removes segment `name` (`shm_unlink(3)`): for segments kept with
/// [`persist`](crate::SharedArray::persist), or left by a crashed owner.
/// Processes that have it mapped keep their mapping.
pub fn unlink(name: &str) -> Result<()> {
    let name = name::validate(name)?;
    os::shm_unlink(name).map_err(|e| Error::from_io("shm_unlink", name, e))
}

impl ArrayInfo {
    /// Reads and validates the header of `map`. Everything in it is
    /// untrusted: lengths are checked before anything is used.
    pub(crate) fn read(map: &Mapping) -> Result<ArrayInfo> {
        let header = read_header(map)?;
        let label = map.backing().label();
        let itemsize = itemsize(&header.descr);
        let itemsize = itemsize
            .ok_or_else(|| Error::bad_header(label, format!("dtype '{}' is not a fixed-size number", header.descr)))?;
        let data_len = layout::data_len(&header.shape, itemsize);
        let data_len =
            data_len.ok_or_else(|| Error::bad_header(label, format!("shape {:?} overflows", header.shape)))?;
        let needed = header.data_offset + data_len; // both < 2^63: no overflow
        if needed > map.len() {
            return Err(Error::TooSmall { name: label.to_owned(), len: map.len() as u64, needed: needed as u64 });
        }
        let trailer = read_trailer(map, header.data_offset, data_len)?;
        Ok(ArrayInfo {
            name: label.to_owned(),
            creator: trailer.map(|t| Creator { pid: t.pid, start_time: t.start_time }),
            persistent: trailer.is_some() && persistent_flag(map) & FLAG_PERSISTENT != 0,
            kind: trailer.map_or(SegmentKind::Array, |t| SegmentKind::from_code(t.kind)),
            dtype: header.descr,
            shape: header.shape,
            fortran: header.fortran,
            data_offset: header.data_offset,
            data_len,
            total_len: map.len(),
            trailer,
        })
    }
}

/// Parses the `.npy` header of `map` from a private copy of its bytes.
fn read_header(map: &Mapping) -> Result<Header> {
    let label = map.backing().label();
    // Acquire pairs with the creator's release store of the ready flag.
    match map.atomic_u8(0).load(Ordering::Acquire) {
        0 => return Err(Error::NotReady { name: label.to_owned() }),
        b if b != MAGIC[0] => return Err(Error::NotAnArray { name: label.to_owned() }),
        _ => {}
    }
    let copy = map.read(0, map.len().min(MAX_HEADER + 12));
    Header::decode(&copy).map_err(|e| match e {
        HeaderError::NotNpy => Error::NotAnArray { name: label.to_owned() },
        HeaderError::Truncated { needed } => {
            Error::TooSmall { name: label.to_owned(), len: map.len() as u64, needed: needed as u64 }
        }
        HeaderError::Bad(reason) => Error::bad_header(label, reason),
    })
}

/// The shmkit trailer, if the segment ends with one that matches its header.
fn read_trailer(map: &Mapping, offset: usize, data_len: usize) -> Result<Option<Trailer>> {
    if layout::segment_len(offset, data_len) != Some(map.len()) {
        return Ok(None); // a plain .npy (numpy wrote it, or a file)
    }
    let bytes = map.read(map.len() - TRAILER_LEN, TRAILER_LEN);
    let trailer = Trailer::decode(bytes.as_slice().try_into().expect("read returns TRAILER_LEN bytes"));
    match trailer {
        Some(t) if (t.data_offset, t.data_len) != (offset as u64, data_len as u64) => {
            Err(Error::bad_header(map.backing().label(), "shmkit trailer disagrees with the .npy header"))
        }
        other => Ok(other),
    }
}

fn persistent_flag(map: &Mapping) -> u32 {
    map.atomic_u32(map.len() - TRAILER_LEN + TRAILER_FLAGS).load(Ordering::Acquire)
}

/// Bytes per element of a numeric numpy dtype string like `<f8` or `|u1`.
fn itemsize(descr: &str) -> Option<usize> {
    let body = descr.strip_prefix(['<', '>', '|', '=']).unwrap_or(descr);
    let (kind, size) = body.split_at_checked(1)?;
    let n: usize = size.parse().ok()?;
    ("biufc".contains(kind) && n > 0 && n <= 32).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::itemsize;

    #[test]
    fn itemsize_reads_numeric_dtypes_only() {
        assert_eq!(itemsize("<f8"), Some(8));
        assert_eq!(itemsize(">c16"), Some(16));
        assert_eq!(itemsize("|b1"), Some(1));
        assert_eq!(itemsize("<U10"), None);
        assert_eq!(itemsize("O"), None);
        assert_eq!(itemsize("<f0"), None);
    }
}
