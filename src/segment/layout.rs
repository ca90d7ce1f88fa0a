//! The bytes of a shmkit segment, and their encoders and decoders.
//!
//! ```text
//! array:     | \x93NUMPY 1 0 hlen {'descr': '<f8', ...} ␠…\n | element data (64-aligned) | pad | trailer 64 |
//! other:     | \x93SHMKIT\0  (64-byte head, zeros)          | body (at 64)              | pad | trailer 64 |
//! ```
//!
//! * An **array** segment is a valid `.npy` file: `numpy.load(path,
//!   mmap_mode='r+')` maps its data in place and ignores what follows.
//!   The header is written in format 1.0 (2.0 when longer than 64 KiB),
//!   padded with spaces so the data starts on a 64-byte boundary.
//! * Every **other** kind (locks, queues, ...) starts with `\x93SHMKIT`,
//!   which numpy refuses to load: a program that maps such a segment as
//!   an array could overwrite lock words that glibc follows as pointers.
//! * The 64-byte **trailer** (shared-memory segments only; files on disk
//!   stay plain `.npy`) carries what shmkit needs and numpy does not:
//!
//!   ```text
//!   0  magic "SHMKIT\0\x02"    8  layout version u32     12 flags u32 (atomic; bit 0 = persistent)
//!   16 creator pid u32          20 kind u32               24 creator start time u64 (clock ticks after boot)
//!   32 data offset u64          40 data length u64        48 creator's PID namespace inode u64
//!   56 reserved, zero
//!   ```
//!
//!   The pid, start time and namespace are for people reading `shmkit ls`;
//!   whether the creator is alive is told by a lock, never by the pid
//!   (see [`super::liveness`]).
//!
//! Headers are parsed as numpy parses them (`ast.literal_eval` plus
//! numpy's checks, see [`super::pyliteral`]), from a private copy: a
//! segment is written by other processes and is untrusted input.

use super::pyliteral::{literal_eval, LiteralError, Value};
use crate::dtype::DType;

/// The `.npy` magic string.
pub(crate) const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";
/// The magic of every segment that is not an array: numpy refuses it.
pub(crate) const OTHER_MAGIC: &[u8; 8] = b"\x93SHMKIT\0";
/// Data offsets and the trailer are aligned to this many bytes.
pub(crate) const ALIGN: usize = 64;
/// Length of the shmkit trailer.
pub(crate) const TRAILER_LEN: usize = 64;
/// Offset of the atomic flags word within the trailer.
pub(crate) const TRAILER_FLAGS: usize = 12;
/// Trailer flag: the segment was kept alive on purpose past its owner.
pub(crate) const FLAG_PERSISTENT: u32 = 1;
/// numpy refuses headers of more characters (`_MAX_HEADER_SIZE`).
pub(crate) const MAX_HEADER_CHARS: usize = 10_000;
/// Most bytes a header numpy accepts can take (UTF-8, format 3.0), with its prefix.
pub(crate) const MAX_HEAD_BYTES: usize = 12 + 4 * MAX_HEADER_CHARS;
/// numpy's `NPY_MAXDIMS`.
pub(crate) const MAX_DIMS: usize = 64;
const TRAILER_MAGIC: &[u8; 8] = b"SHMKIT\0\x02";
const LAYOUT_VERSION: u32 = 2;

/// A parsed `.npy` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The dtype string as written (may be one shmkit cannot hold).
    pub descr: String,
    /// Column-major element order.
    pub fortran: bool,
    /// Length of each axis.
    pub shape: Vec<usize>,
    /// Where the element data starts.
    pub data_offset: usize,
}

/// Why a header could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// No `.npy` magic.
    NotNpy,
    /// The bytes end before the header does.
    Truncated { needed: usize },
    /// The header is there but numpy would refuse it.
    Bad(String),
}

/// Rounds `n` up to a multiple of [`ALIGN`], `None` on overflow.
pub(crate) fn align_up(n: usize) -> Option<usize> {
    Some(n.checked_add(ALIGN - 1)? & !(ALIGN - 1))
}

/// Bytes taken by `shape` elements of `itemsize` bytes; `None` if the
/// product of the non-zero axes, in bytes, passes `isize::MAX` (ndarray
/// refuses such shapes even when another axis is 0 and the array empty).
pub(crate) fn data_len(shape: &[usize], itemsize: usize) -> Option<usize> {
    let nonzero = shape.iter().filter(|&&d| d != 0).try_fold(itemsize, |acc, &d| acc.checked_mul(d))?;
    (nonzero <= isize::MAX as usize).then(|| if shape.contains(&0) { 0 } else { nonzero })
}

/// Total segment length for data at `offset` of `len` bytes, with trailer.
pub(crate) fn segment_len(offset: usize, len: usize) -> Option<usize> {
    let end = align_up(offset.checked_add(len)?)?.checked_add(TRAILER_LEN)?;
    (end <= isize::MAX as usize).then_some(end)
}

/// The 64-byte head of a segment that is not an array.
pub(crate) fn other_head() -> Vec<u8> {
    let mut head = vec![0u8; ALIGN];
    head[..OTHER_MAGIC.len()].copy_from_slice(OTHER_MAGIC);
    head
}

impl Header {
    /// Encodes the header bytes, padded so the data starts 64-aligned.
    pub fn encode(dtype: DType, shape: &[usize], fortran: bool) -> Vec<u8> {
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        let tuple = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let pyfortran = if fortran { "True" } else { "False" };
        let dict = format!("{{'descr': '{}', 'fortran_order': {pyfortran}, 'shape': {tuple}, }}", dtype.descr());
        let v1 = dict.len() + 1 + 10 <= usize::from(u16::MAX);
        let prefix = if v1 { 10 } else { 12 };
        let total = align_up(prefix + dict.len() + 1).expect("header length overflows");
        let hlen = total - prefix;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(NPY_MAGIC);
        out.extend_from_slice(if v1 { &[1, 0] } else { &[2, 0] });
        match v1 {
            true => out.extend_from_slice(&(hlen as u16).to_le_bytes()),
            false => out.extend_from_slice(&(hlen as u32).to_le_bytes()),
        }
        out.extend_from_slice(dict.as_bytes());
        out.resize(total - 1, b' ');
        out.push(b'\n');
        out
    }

    /// Parses the header at the start of `bytes` (a copy of the segment),
    /// accepting exactly what numpy's `read_array_header_{1,2,3}_0` accepts
    /// and refusing shapes numpy could not make an array of.
    pub fn decode(bytes: &[u8]) -> Result<Header, HeaderError> {
        if bytes.len() < 10 {
            return match bytes.starts_with(&NPY_MAGIC[..bytes.len().min(6)]) {
                true => Err(HeaderError::Truncated { needed: 10 }),
                false => Err(HeaderError::NotNpy),
            };
        }
        if &bytes[..6] != NPY_MAGIC {
            return Err(HeaderError::NotNpy);
        }
        let version = (bytes[6], bytes[7]);
        let (prefix, hlen) = match version {
            (1, 0) => (10, usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))),
            (2 | 3, 0) if bytes.len() >= 12 => (12, u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize),
            (2 | 3, 0) => return Err(HeaderError::Truncated { needed: 12 }),
            (a, b) => return Err(HeaderError::Bad(format!("unsupported .npy format version {a}.{b}"))),
        };
        let data_offset = prefix + hlen;
        if hlen > MAX_HEAD_BYTES {
            return Err(too_long(hlen));
        }
        let raw = bytes.get(prefix..data_offset).ok_or(HeaderError::Truncated { needed: data_offset })?;
        let text: String = match version.0 {
            3 => String::from_utf8(raw.to_vec()).map_err(|_| HeaderError::Bad("header is not valid UTF-8".into()))?,
            _ => raw.iter().map(|&b| b as char).collect(), // latin-1
        };
        if text.chars().count() > MAX_HEADER_CHARS {
            return Err(too_long(text.chars().count()));
        }
        let value = match literal_eval(&text, false) {
            Err(LiteralError::Syntax(_)) if version.0 <= 2 => literal_eval(&text, true),
            other => other,
        };
        let value = value.map_err(|e| HeaderError::Bad(format!("cannot parse header: {e:?}")))?;
        let (descr, fortran, shape) = check_dict(value).map_err(HeaderError::Bad)?;
        Ok(Header { descr, fortran, shape, data_offset })
    }
}

fn too_long(n: usize) -> HeaderError {
    HeaderError::Bad(format!("header of {n} characters is longer than numpy's limit of {MAX_HEADER_CHARS}"))
}

/// numpy's checks on the parsed header, plus what array creation refuses.
fn check_dict(value: Value) -> Result<(String, bool, Vec<usize>), String> {
    let Value::Dict(entries) = value else { return Err("header is not a dictionary".into()) };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, v) in entries {
        // Python keeps the last of repeated keys.
        match key {
            Value::Str(k) if k == "descr" => descr = Some(v),
            Value::Str(k) if k == "fortran_order" => fortran = Some(v),
            Value::Str(k) if k == "shape" => shape = Some(v),
            other => return Err(format!("header has an unexpected key {other:?}")),
        }
    }
    let missing = |k: &str| format!("header has no '{k}'");
    let descr = match descr.ok_or_else(|| missing("descr"))? {
        Value::Str(s) => s,
        Value::List(_) | Value::Tuple(_) => return Err("structured and sub-array dtypes are not supported".into()),
        other => return Err(format!("descr is not a valid dtype descriptor: {other:?}")),
    };
    let fortran = match fortran.ok_or_else(|| missing("fortran_order"))? {
        Value::Bool(b) => b,
        other => return Err(format!("fortran_order is not a valid bool: {other:?}")),
    };
    let Value::Tuple(dims) = shape.ok_or_else(|| missing("shape"))? else {
        return Err("shape is not a tuple".into());
    };
    if dims.len() > MAX_DIMS {
        return Err(format!("{} dimensions: numpy allows at most {MAX_DIMS}", dims.len()));
    }
    let shape = dims
        .into_iter()
        .map(|d| match d {
            Value::Int(Some(n)) if n >= 0 => usize::try_from(n).map_err(|_| format!("axis length {n} overflows")),
            Value::Int(Some(n)) => Err(format!("negative axis length {n}")),
            Value::Int(None) => Err("an axis length overflows".into()),
            other => Err(format!("shape holds a non-integer {other:?}")),
        })
        .collect::<Result<Vec<usize>, String>>()?;
    Ok((descr, fortran, shape))
}

/// The shmkit trailer of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub flags: u32,
    pub pid: u32,
    pub kind: u32,
    pub start_time: u64,
    pub data_offset: u64,
    pub data_len: u64,
    pub pid_namespace: u64,
}

impl Trailer {
    /// The trailer's bytes.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[..8].copy_from_slice(TRAILER_MAGIC);
        b[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..20].copy_from_slice(&self.pid.to_le_bytes());
        b[20..24].copy_from_slice(&self.kind.to_le_bytes());
        b[24..32].copy_from_slice(&self.start_time.to_le_bytes());
        b[32..40].copy_from_slice(&self.data_offset.to_le_bytes());
        b[40..48].copy_from_slice(&self.data_len.to_le_bytes());
        b[48..56].copy_from_slice(&self.pid_namespace.to_le_bytes());
        b
    }

    /// The layout version of a shmkit trailer of another version (the
    /// previous release wrote version 1); `None` for this version's or for
    /// bytes that are no shmkit trailer at all.
    pub fn other_version(b: &[u8; TRAILER_LEN]) -> Option<u32> {
        let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
        (b[..6] == TRAILER_MAGIC[..6] && b[6] == 0 && version != LAYOUT_VERSION).then_some(version)
    }

    /// Reads a trailer; `None` unless it is one this version wrote.
    pub fn decode(b: &[u8; TRAILER_LEN]) -> Option<Trailer> {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        if &b[..8] != TRAILER_MAGIC || u32_at(8) != LAYOUT_VERSION {
            return None;
        }
        Some(Trailer {
            flags: u32_at(12),
            pid: u32_at(16),
            kind: u32_at(20),
            start_time: u64_at(24),
            data_offset: u64_at(32),
            data_len: u64_at(40),
            pid_namespace: u64_at(48),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> Result<Header, HeaderError> {
        let mut b = NPY_MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(text.len() as u16).to_le_bytes());
        b.extend_from_slice(text.as_bytes());
        Header::decode(&b)
    }

    fn round_trip(shape: &[usize], fortran: bool) {
        let bytes = Header::encode(DType::F64, shape, fortran);
        assert_eq!(bytes.len() % ALIGN, 0);
        let h = Header::decode(&bytes).unwrap();
        assert_eq!(h, Header { descr: "<f8".into(), fortran, shape: shape.to_vec(), data_offset: bytes.len() });
    }

    #[test]
    fn headers_round_trip_for_every_rank() {
        round_trip(&[], false);
        round_trip(&[7], false);
        round_trip(&[3, 4], true);
        round_trip(&[1, 2, 3, 4, 5, 6], false);
    }

    #[test]
    fn headers_numpy_accepts_are_accepted() {
        let h = header("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }  \n").unwrap();
        assert_eq!((h.descr.as_str(), h.shape.as_slice()), ("<i4", &[2, 3][..]));
        let dup = header("{'descr': 1.5, 'descr': '<f8', 'fortran_order': False, 'shape': (2,)}").unwrap();
        assert_eq!(dup.descr, "<f8", "Python keeps the last of repeated keys");
        assert_eq!(header("{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 3L)}").unwrap().shape, [2, 3]);
        assert_eq!(header("{\"shape\": (0x2,), 'descr': '\\x3cf8', 'fortran_order': True}").unwrap().shape, [2]);
    }

    #[test]
    fn headers_numpy_refuses_are_refused_with_reasons() {
        let bad = |t: &str, why: &str| match header(t) {
            Err(HeaderError::Bad(r)) => assert!(r.contains(why), "{t}: {r}"),
            other => panic!("{t}: {other:?}"),
        };
        bad("{'descr': '<f8', 'shape': (2,)}", "fortran_order");
        bad("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': ()}", "structured");
        bad("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}", "negative");
        bad("{'descr': '<f8', 'fortran_order': False, 'shape': (True,)}", "non-integer");
        bad("{'descr': '<f8', 'fortran_order': 0, 'shape': ()}", "valid bool");
        bad("{'descr': '<f8', 'fortran_order': False, 'shape': [2]}", "tuple");
        bad("{'descr': '<f8', 'fortran_order': False, 'shape': (), 'extra': 1}", "unexpected key");
        bad("garbage", "cannot parse");
        let mut v4 = Header::encode(DType::F64, &[2], false);
        v4[6] = 1;
        v4[7] = 1;
        assert!(matches!(Header::decode(&v4), Err(HeaderError::Bad(r)) if r.contains("version 1.1")));
        assert_eq!(Header::decode(b"\x93NUMPY\x01\x00\xff\x00{"), Err(HeaderError::Truncated { needed: 265 }));
        assert_eq!(Header::decode(b"PK\x03\x04 not numpy"), Err(HeaderError::NotNpy));
        assert_eq!(Header::decode(&other_head()), Err(HeaderError::NotNpy));
        let long = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}}{}", " ".repeat(10_001));
        bad(&long, "limit");
    }

    #[test]
    fn sizes_check_overflow_even_past_a_zero_axis() {
        assert_eq!(data_len(&[usize::MAX, 2], 8), None);
        assert_eq!(data_len(&[0, usize::MAX / 4, 8], 8), None, "ndarray refuses this shape though it is empty");
        assert_eq!(data_len(&[0, 5], 8), Some(0));
        assert_eq!(data_len(&[3, 4], 8), Some(96));
        assert_eq!(data_len(&[], 8), Some(8));
        assert_eq!(segment_len(128, 8), Some(128 + 64 + 64));
        assert_eq!(segment_len(usize::MAX - 10, 8), None);
    }

    #[test]
    fn trailer_round_trips_and_rejects_foreign_bytes() {
        let t =
            Trailer { flags: 1, pid: 42, kind: 0, start_time: 99, data_offset: 128, data_len: 800, pid_namespace: 7 };
        assert_eq!(Trailer::decode(&t.encode()), Some(t));
        assert_eq!(Trailer::decode(&[0; TRAILER_LEN]), None);
    }
}
