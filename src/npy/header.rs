//! The `.npy` header: encoded as numpy writes it, decoded as numpy reads
//! it (`ast.literal_eval` plus numpy's checks, see [`super::literal`]),
//! from a private copy: a segment is written by other processes and is
//! untrusted input.

use super::dtype::DType;
use super::literal::{literal_eval, LiteralError, Value};

/// The `.npy` magic string.
pub(crate) const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";
/// numpy refuses headers of more characters (`_MAX_HEADER_SIZE`).
pub(crate) const MAX_HEADER_CHARS: usize = 10_000;
/// Most bytes a header numpy accepts can take (UTF-8, format 3.0), with its prefix.
pub(crate) const MAX_HEAD_BYTES: usize = 12 + 4 * MAX_HEADER_CHARS;
/// numpy's `NPY_MAXDIMS`.
pub(crate) const MAX_DIMS: usize = 64;
/// Headers are padded so that the data starts at a multiple of this.
const ALIGN: usize = 64;

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
        let total = (prefix + dict.len() + 1).div_ceil(ALIGN) * ALIGN;
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
        assert_eq!(Header::decode(b"\x93SHMKIT\0 and more bytes"), Err(HeaderError::NotNpy));
        let long = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}}{}", " ".repeat(10_001));
        bad(&long, "limit");
    }
}
