//! The one validating reader of a segment's header and trailer, used by
//! `open`, `inspect`, `ls` and `gc` alike.
//!
//! It reads through the fd (`pread(2)`), not a mapping, so a file another
//! process truncates cannot crash the reader with SIGBUS, and it checks
//! every length and offset before anything is derived from it.

use rustix::fd::AsFd;

use super::layout::{data_len, segment_len, Trailer, ALIGN, OTHER_MAGIC, TRAILER_LEN};
use crate::kind::SegmentKind;
use crate::npy::dtype::NumpyType;
use crate::npy::header::{Header, HeaderError, MAX_HEAD_BYTES};
use crate::os;
use crate::{Error, Result};

/// What a segment's bytes say, validated against its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub kind: SegmentKind,
    pub total_len: usize,
    pub data_offset: usize,
    pub data_len: usize,
    /// The `.npy` header, for arrays.
    pub header: Option<Header>,
    /// The shmkit trailer, absent in plain `.npy` files.
    pub trailer: Option<Trailer>,
    /// What a segment that is not an array holds (see `types`).
    pub types: super::types::Types,
}

/// Why bytes are not a segment this version can use.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LayoutError {
    /// Neither a `.npy` file nor a shmkit segment.
    Foreign,
    /// Shorter than its header says.
    TooSmall { needed: usize },
    /// Malformed or inconsistent.
    Bad(String),
    /// Made by a shmkit with another layout version.
    OtherVersion(u32),
}

/// Validates a segment of `total_len` bytes from its first bytes `head`
/// (at least `min(total_len, MAX_HEAD_BYTES)` of them when the header is
/// long) and its last 64 bytes `tail`. Pure: the fuzz target calls it.
pub(crate) fn read_layout(
    total_len: usize,
    head: &[u8],
    tail: Option<&[u8; TRAILER_LEN]>,
) -> Result<Layout, LayoutError> {
    if let Some(version) = tail.and_then(Trailer::other_version) {
        return Err(LayoutError::OtherVersion(version));
    }
    let trailer = tail.and_then(Trailer::decode);
    if let Some(t) = trailer {
        let fits = usize::try_from(t.data_offset)
            .ok()
            .zip(usize::try_from(t.data_len).ok())
            .is_some_and(|(o, l)| o >= ALIGN && o % ALIGN == 0 && segment_len(o, l) == Some(total_len));
        if !fits {
            return Err(LayoutError::Bad("its shmkit trailer does not fit its length".into()));
        }
    }
    let kind = trailer.map_or(SegmentKind::Array, |t| SegmentKind::from_code(t.kind));
    // A stream is a `.npy` array of slots followed by its control block.
    let npy = matches!(kind, SegmentKind::Array | SegmentKind::Stream);
    if !npy {
        if !head.starts_with(OTHER_MAGIC) {
            return Err(LayoutError::Bad(format!("a {kind} segment without its shmkit head")));
        }
        let t = trailer.expect("non-array kinds come from a trailer");
        let (data_offset, data_len) = (t.data_offset as usize, t.data_len as usize);
        let head = head.get(..data_offset).ok_or(LayoutError::TooSmall { needed: data_offset })?;
        let types = super::types::decode(head).map_err(LayoutError::Bad)?;
        return Ok(Layout { kind, total_len, data_offset, data_len, header: None, trailer, types });
    }
    let header = Header::decode(head).map_err(|e| match e {
        HeaderError::NotNpy if trailer.is_some() => LayoutError::Bad("a shmkit array without a .npy header".into()),
        HeaderError::NotNpy => LayoutError::Foreign,
        HeaderError::Truncated { needed } => LayoutError::TooSmall { needed },
        HeaderError::Bad(reason) => LayoutError::Bad(reason),
    })?;
    let size = itemsize(&header.descr)
        .ok_or_else(|| LayoutError::Bad(format!("dtype '{}' is not a fixed-size numpy type", header.descr)))?;
    let data_len =
        data_len(&header.shape, size).ok_or_else(|| LayoutError::Bad(format!("shape {:?} overflows", header.shape)))?;
    let needed = header.data_offset + data_len; // both below 2^63: no overflow
    if needed > total_len {
        return Err(LayoutError::TooSmall { needed });
    }
    let agrees = |t: Trailer| match kind {
        // The control block follows the slots: the data is longer than the array.
        SegmentKind::Stream => t.data_offset == header.data_offset as u64 && t.data_len > data_len as u64,
        _ => (t.data_offset, t.data_len) == (header.data_offset as u64, data_len as u64),
    };
    if trailer.is_some_and(|t| !agrees(t)) {
        return Err(LayoutError::Bad("its shmkit trailer disagrees with its .npy header".into()));
    }
    let data_len = trailer.filter(|_| kind == SegmentKind::Stream).map_or(data_len, |t| t.data_len as usize);
    let data_offset = header.data_offset;
    Ok(Layout { kind, total_len, data_offset, data_len, header: Some(header), trailer, types: Vec::new() })
}

/// Reads and validates the segment or file open at `fd`; `label` names it
/// in errors.
pub(crate) fn probe(fd: impl AsFd, label: &str) -> Result<Layout> {
    let stat = os::stat(&fd).map_err(|e| Error::from_io("fstat", label, e))?;
    if !stat.regular {
        return Err(Error::NotAnArray { name: label.to_owned() });
    }
    let total_len = usize::try_from(stat.len).ok().filter(|&l| l <= isize::MAX as usize);
    let total_len = total_len.ok_or_else(|| Error::bad_header(label, "length exceeds the address space"))?;
    let read = |offset: usize, len: usize| -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        os::read_at(&fd, offset as u64, &mut buf).map_err(|e| Error::from_io("pread", label, e))?;
        Ok(buf)
    };
    let tail = tail_bytes(&fd, total_len as u64).map_err(|e| Error::from_io("pread", label, e))?;
    let mut head = read(0, total_len.min(4096))?;
    loop {
        match read_layout(total_len, &head, tail.as_ref()) {
            // A long header: read as much of it as a valid one can take.
            Err(LayoutError::TooSmall { needed })
                if needed > head.len() && head.len() < total_len.min(MAX_HEAD_BYTES) =>
            {
                head = read(0, total_len.min(MAX_HEAD_BYTES))?;
            }
            Ok(layout) => return Ok(layout),
            Err(e) => return Err(layout_error(e, label, total_len)),
        }
    }
}

/// The last 64 bytes of a file of `len` bytes, where a trailer would be.
fn tail_bytes(fd: impl AsFd, len: u64) -> std::io::Result<Option<[u8; TRAILER_LEN]>> {
    let Some(at) = len.checked_sub(TRAILER_LEN as u64) else { return Ok(None) };
    let mut tail = [0u8; TRAILER_LEN];
    os::read_at(fd, at, &mut tail)?;
    Ok(Some(tail))
}

/// The shmkit trailer of the file at `fd`, read now, if it has one; for
/// segments whose header cannot be read yet (being created) and for the
/// flags word, which changes after creation.
pub(crate) fn read_trailer(fd: impl AsFd) -> Option<Trailer> {
    let len = os::stat(&fd).ok()?.len;
    tail_bytes(&fd, len).ok()?.as_ref().and_then(Trailer::decode)
}

fn layout_error(e: LayoutError, label: &str, total_len: usize) -> Error {
    match e {
        LayoutError::Foreign => Error::NotAnArray { name: label.to_owned() },
        LayoutError::TooSmall { needed } => {
            Error::TooSmall { name: label.to_owned(), len: total_len as u64, needed: needed as u64 }
        }
        LayoutError::Bad(reason) => Error::bad_header(label, reason),
        LayoutError::OtherVersion(version) => Error::OlderVersion { name: label.to_owned(), version },
    }
}

/// Bytes per element of a fixed-size numpy dtype string such as `<f8`,
/// `|u1`, `d`, `<U10` or `<M8[ns]`; `None` for anything else (objects,
/// structured types, names like `'float64'`, malformed strings).
pub(crate) fn itemsize(descr: &str) -> Option<usize> {
    NumpyType::parse(descr).map(|t| t.size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::dtype::DType;

    fn segment(kind: SegmentKind, head: &[u8], data_len: usize) -> Vec<u8> {
        let total = segment_len(head.len(), data_len).unwrap();
        let mut b = head.to_vec();
        b.resize(total, 0);
        let t = Trailer {
            flags: 0,
            pid: 1,
            kind: kind.code(),
            start_time: 0,
            data_offset: head.len() as u64,
            data_len: data_len as u64,
            pid_namespace: 0,
        };
        b[total - TRAILER_LEN..].copy_from_slice(&t.encode());
        b
    }

    fn layout_of(bytes: &[u8]) -> Result<Layout, LayoutError> {
        let tail = bytes.len().checked_sub(TRAILER_LEN).map(|at| bytes[at..].try_into().unwrap());
        read_layout(bytes.len(), bytes, tail)
    }

    #[test]
    fn arrays_and_other_kinds_are_told_apart_by_their_trailer() {
        let array = segment(SegmentKind::Array, &Header::encode(DType::F32, &[3, 2], false), 24);
        let l = layout_of(&array).unwrap();
        assert_eq!((l.kind, l.data_offset, l.data_len), (SegmentKind::Array, 128, 24));
        let mutex = segment(SegmentKind::Mutex, &super::super::types::encode(&[]), 72);
        let l = layout_of(&mutex).unwrap();
        assert_eq!((l.kind, l.data_offset, l.data_len, l.header), (SegmentKind::Mutex, 64, 72, None));
    }

    #[test]
    fn inconsistent_segments_are_refused() {
        let mut lying = segment(SegmentKind::Queue, &Header::encode(DType::U8, &[8], false), 8);
        assert!(matches!(layout_of(&lying), Err(LayoutError::Bad(r)) if r.contains("shmkit head")));
        let n = lying.len();
        lying[n - TRAILER_LEN + 40] = 99; // data length no longer fits the segment
        assert!(matches!(layout_of(&lying), Err(LayoutError::Bad(r)) if r.contains("does not fit")));
        let headless = segment(SegmentKind::Array, &super::super::types::encode(&[]), 8);
        assert!(matches!(layout_of(&headless), Err(LayoutError::Bad(r)) if r.contains(".npy header")));
        assert_eq!(
            layout_of(b"plain text, no trailer, long enough to have a tail........................."),
            Err(LayoutError::Foreign)
        );
    }

    #[test]
    fn itemsize_knows_numpys_fixed_size_types_only() {
        assert_eq!(itemsize("<f8"), Some(8));
        assert_eq!(itemsize(">c16"), Some(16));
        assert_eq!(itemsize("|b1"), Some(1));
        assert_eq!(itemsize("<U10"), Some(40));
        assert_eq!(itemsize("<M8[ns]"), Some(8));
        assert_eq!(itemsize("<f3"), None);
        assert_eq!(itemsize("d"), Some(8));
        assert_eq!(itemsize("<m8[]"), None);
        assert_eq!(itemsize("O"), None);
        assert_eq!(itemsize("<f0"), None);
        assert_eq!(itemsize("<S0"), Some(0));
        assert_eq!(itemsize("|S99999999999999"), None);
    }

    /// The fuzzer's shmkit seeds (`fuzz/seeds/segment_reader/shmkit_*`),
    /// in this layout version; `SHMKIT_WRITE_FUZZ_SEEDS=1 cargo test seeds`
    /// rewrites them. (The `npy_*` seeds are numpy's files, which do not
    /// change.)
    #[test]
    fn the_fuzzers_segment_seeds_are_this_layout() {
        let seeds = [
            ("shmkit_array", segment(SegmentKind::Array, &Header::encode(DType::F64, &[2, 3], false), 48)),
            ("shmkit_mutex", segment(SegmentKind::Mutex, &super::super::types::encode(&[("value", "<u8".into())]), 72)),
            (
                "shmkit_map",
                segment(
                    SegmentKind::Map,
                    &super::super::types::encode(&[
                        ("key", "|S24".into()),
                        ("value", "[('a', '<u4'), ('b', '<f4')]".into()),
                    ]),
                    256,
                ),
            ),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/segment_reader");
        for (name, bytes) in &seeds {
            if std::env::var_os("SHMKIT_WRITE_FUZZ_SEEDS").is_some() {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
            assert!(layout_of(bytes).is_ok(), "{name}");
            let on_disk = std::fs::read(dir.join(name)).unwrap_or_default();
            assert_eq!(&on_disk, bytes, "seed {name} is stale: SHMKIT_WRITE_FUZZ_SEEDS=1 cargo test seeds");
        }
    }
}
