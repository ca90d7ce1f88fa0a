//! The bytes of a shmkit segment: a valid `.npy` file plus a trailer.
//!
//! ```text
//!  0        6     8        10 (or 12)                        D = 64·k
//!  +--------+-----+--------+--------------------------------+------------------+-----+------------+
//!  |\x93NUMPY|1  0 |hlen u16| {'descr': '<f8', ...}  ␠␠␠ \n | element data     | pad | trailer 64 |
//!  +--------+-----+--------+--------------------------------+------------------+-----+------------+
//!                                                            D               D+nbytes   T=align64(D+nbytes)
//! ```
//!
//! * Bytes `0..D` are an ordinary `.npy` header (format 1.0, or 2.0 when the
//!   header needs more than 64 KiB), padded with spaces so that the data
//!   starts on a 64-byte boundary. `numpy.load(path, mmap_mode='r+')` maps
//!   the data in place; numpy ignores whatever follows the data.
//! * The 64-byte **trailer** at `T` (shared-memory segments only; files on
//!   disk stay plain `.npy`) carries what shmkit needs and numpy does not:
//!
//!   ```text
//!   0  magic "SHMKIT\0\x01"   8  layout version u32   12 flags u32 (atomic; bit 0 = persistent)
//!   16 creator pid u32        20 kind u32 (0 = array)  24 creator start time u64 (clock ticks after boot)
//!   32 data offset D u64      40 data length u64       48 reserved, zero
//!   ```
//!
//!   It always ends the segment, so a segment's last 64 bytes tell whether
//!   shmkit made it, even before its header is readable.
//! * **Ready flag**: the creator writes byte 0 (`\x93`) last, with release
//!   ordering. An attacher that reads anything else there (a fresh segment
//!   is all zeros) is told [`Error::NotReady`](crate::Error::NotReady), so
//!   it never parses a half-written header.
//!
//! Everything here is parsed from a private copy of the bytes, and every
//! length is checked before it is used: a segment is written by other
//! processes and is untrusted input.

use crate::dtype::DType;

/// The `.npy` magic string; its first byte doubles as the ready flag.
pub(crate) const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Data offsets and the trailer are aligned to this many bytes.
pub(crate) const ALIGN: usize = 64;
/// Length of the shmkit trailer.
pub(crate) const TRAILER_LEN: usize = 64;
/// Offset of the atomic flags word within the trailer.
pub(crate) const TRAILER_FLAGS: usize = 12;
/// Trailer flag: the segment was kept alive on purpose past its owner.
pub(crate) const FLAG_PERSISTENT: u32 = 1;
/// Most header bytes shmkit will read; numpy itself refuses past 10 000.
pub(crate) const MAX_HEADER: usize = 1 << 16;
const TRAILER_MAGIC: &[u8; 8] = b"SHMKIT\0\x01";
const LAYOUT_VERSION: u32 = 1;

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
    /// The header is there but malformed.
    Bad(String),
}

/// Rounds `n` up to a multiple of [`ALIGN`], `None` on overflow.
pub(crate) fn align_up(n: usize) -> Option<usize> {
    Some(n.checked_add(ALIGN - 1)? & !(ALIGN - 1))
}

/// Bytes taken by `shape` elements of `itemsize` bytes, `None` on overflow.
pub(crate) fn data_len(shape: &[usize], itemsize: usize) -> Option<usize> {
    let n = shape.iter().try_fold(itemsize, |acc, &d| acc.checked_mul(d))?;
    (n <= isize::MAX as usize).then_some(n)
}

/// Total segment length for data at `offset` of `len` bytes, with trailer.
pub(crate) fn segment_len(offset: usize, len: usize) -> Option<usize> {
    let end = align_up(offset.checked_add(len)?)?.checked_add(TRAILER_LEN)?;
    (end <= isize::MAX as usize).then_some(end)
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
        out.extend_from_slice(MAGIC);
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

    /// Parses the header at the start of `bytes` (a copy of the segment).
    pub fn decode(bytes: &[u8]) -> Result<Header, HeaderError> {
        if bytes.len() < 10 {
            return Err(HeaderError::Truncated { needed: 10 });
        }
        if &bytes[..6] != MAGIC {
            return Err(HeaderError::NotNpy);
        }
        let (prefix, hlen) = match bytes[6] {
            1 => (10, usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))),
            2 | 3 if bytes.len() >= 12 => (12, u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize),
            2 | 3 => return Err(HeaderError::Truncated { needed: 12 }),
            v => return Err(HeaderError::Bad(format!("unsupported .npy format version {v}.{}", bytes[7]))),
        };
        if hlen > MAX_HEADER {
            return Err(HeaderError::Bad(format!("header length {hlen} exceeds {MAX_HEADER} bytes")));
        }
        let data_offset = prefix + hlen;
        let text = bytes.get(prefix..data_offset).ok_or(HeaderError::Truncated { needed: data_offset })?;
        let dict = parse_dict(text).map_err(HeaderError::Bad)?;
        Ok(Header { descr: dict.0, fortran: dict.1, shape: dict.2, data_offset })
    }
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
        b
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
        })
    }
}

type Dict = (String, bool, Vec<usize>);

/// Parses numpy's header dict: a Python literal with exactly the keys
/// `descr`, `fortran_order` and `shape`, then spaces and a newline.
fn parse_dict(text: &[u8]) -> Result<Dict, String> {
    let mut p = Parser { s: text, i: 0 };
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    while !p.eat(b'}') {
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" if descr.is_none() => descr = Some(p.descr()?),
            "fortran_order" if fortran.is_none() => fortran = Some(p.boolean()?),
            "shape" if shape.is_none() => shape = Some(p.tuple()?),
            _ => return Err(format!("unexpected or repeated key '{key}'")),
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_ws();
    if p.i != text.len() {
        return Err("unexpected bytes after the header dict".into());
    }
    let missing = |k: &str| format!("header has no '{k}'");
    Ok((
        descr.ok_or_else(|| missing("descr"))?,
        fortran.ok_or_else(|| missing("fortran_order"))?,
        shape.ok_or_else(|| missing("shape"))?,
    ))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.eat(c) {
            true => Ok(()),
            false => Err(format!("expected '{}' at byte {}", c as char, self.i)),
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &[u8] {
        let start = self.i;
        while self.s.get(self.i).is_some_and(|&c| f(c)) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn string(&mut self) -> Result<String, String> {
        let q = self
            .peek()
            .filter(|&c| c == b'\'' || c == b'"')
            .ok_or_else(|| format!("expected a string at byte {}", self.i))?;
        self.i += 1;
        let body = self.take_while(|c| c != q && c != b'\\' && c != b'\n').to_vec();
        self.expect_raw(q)?;
        String::from_utf8(body).map_err(|_| "non-ASCII string in header".to_string())
    }

    fn expect_raw(&mut self, c: u8) -> Result<(), String> {
        if self.s.get(self.i) != Some(&c) {
            return Err(format!("unterminated string at byte {}", self.i));
        }
        self.i += 1;
        Ok(())
    }

    fn descr(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(b'[') => Err("structured dtypes are not supported".into()),
            _ => self.string(),
        }
    }

    fn boolean(&mut self) -> Result<bool, String> {
        self.skip_ws();
        match self.take_while(|c| c.is_ascii_alphabetic()) {
            b"True" => Ok(true),
            b"False" => Ok(false),
            _ => Err("'fortran_order' must be True or False".into()),
        }
    }

    fn int(&mut self) -> Result<usize, String> {
        self.skip_ws();
        let digits = self.take_while(|c| c.is_ascii_digit());
        let n = std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok());
        let n = n.ok_or_else(|| format!("expected a non-negative axis length at byte {}", self.i))?;
        self.eat(b'L'); // Python 2 long suffix, still found in old files
        Ok(n)
    }

    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        while !self.eat(b')') {
            if dims.len() == 64 {
                return Err("more than 64 dimensions".into());
            }
            dims.push(self.int()?);
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn numpy_written_header_parses() {
        let text = b"{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }                                                          \n";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
        bytes.extend_from_slice(text);
        let h = Header::decode(&bytes).unwrap();
        assert_eq!((h.descr.as_str(), h.shape.as_slice()), ("<i4", &[2, 3][..]));
    }

    #[test]
    fn malformed_headers_are_rejected_with_reasons() {
        let enc = |t: &str| {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&(t.len() as u16).to_le_bytes());
            b.extend_from_slice(t.as_bytes());
            Header::decode(&b)
        };
        assert!(
            matches!(enc("{'descr': '<f8', 'shape': (2,)}"), Err(HeaderError::Bad(r)) if r.contains("fortran_order"))
        );
        assert!(
            matches!(enc("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': ()}"), Err(HeaderError::Bad(r)) if r.contains("structured"))
        );
        assert!(matches!(enc("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}"), Err(HeaderError::Bad(_))));
        assert!(matches!(enc("{'descr': '<f8', 'descr': '<f8'}"), Err(HeaderError::Bad(r)) if r.contains("repeated")));
        assert!(matches!(enc("garbage"), Err(HeaderError::Bad(_))));
        assert_eq!(Header::decode(b"\x93NUMPY\x01\x00\xff\x00{"), Err(HeaderError::Truncated { needed: 265 }));
        assert_eq!(Header::decode(b"PK\x03\x04 not numpy"), Err(HeaderError::NotNpy));
    }

    #[test]
    fn sizes_check_overflow() {
        assert_eq!(data_len(&[usize::MAX, 2], 8), None);
        assert_eq!(data_len(&[3, 4], 8), Some(96));
        assert_eq!(data_len(&[], 8), Some(8));
        assert_eq!(segment_len(128, 8), Some(128 + 64 + 64));
        assert_eq!(segment_len(usize::MAX - 10, 8), None);
    }

    #[test]
    fn trailer_round_trips_and_rejects_foreign_bytes() {
        let t = Trailer { flags: 1, pid: 42, kind: 0, start_time: 99, data_offset: 128, data_len: 800 };
        assert_eq!(Trailer::decode(&t.encode()), Some(t));
        assert_eq!(Trailer::decode(&[0; TRAILER_LEN]), None);
    }
}
