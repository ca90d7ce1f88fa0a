//! Element types and their numpy dtype strings.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The element types a shared array can hold, named as numpy names them.
///
/// Byte order is always little-endian (shmkit refuses big-endian hosts at
/// compile time), so `'<'` and the native `'='` are the same thing here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// `i8`, numpy `|i1`.
    I8,
    /// `i16`, numpy `<i2`.
    I16,
    /// `i32`, numpy `<i4`.
    I32,
    /// `i64`, numpy `<i8`.
    I64,
    /// `u8`, numpy `|u1`.
    U8,
    /// `u16`, numpy `<u2`.
    U16,
    /// `u32`, numpy `<u4`.
    U32,
    /// `u64`, numpy `<u8`.
    U64,
    /// `f32`, numpy `<f4`.
    F32,
    /// `f64`, numpy `<f8`.
    F64,
}

const ALL: [DType; 10] = [
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::F32,
    DType::F64,
];

impl DType {
    /// The dtypes arrays hold, for messages: numpy's names and strings.
    pub const SUPPORTED: &'static str = "one of int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, \
                                         float64 (little-endian: '|i1' ... '<f8')";

    /// Every dtype arrays hold.
    pub fn all() -> [DType; 10] {
        ALL
    }

    /// The numpy dtype string written into headers, e.g. `"<f8"`.
    pub const fn descr(self) -> &'static str {
        match self {
            DType::I8 => "|i1",
            DType::I16 => "<i2",
            DType::I32 => "<i4",
            DType::I64 => "<i8",
            DType::U8 => "|u1",
            DType::U16 => "<u2",
            DType::U32 => "<u4",
            DType::U64 => "<u8",
            DType::F32 => "<f4",
            DType::F64 => "<f8",
        }
    }

    /// Bytes per element.
    pub const fn itemsize(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// Parses a numpy dtype string; `None` for anything shmkit cannot hold.
    ///
    /// Accepts numpy's dtype strings (`'<f8'`, `'=f8'`, `'f8'`, `'d'`, ...)
    /// whose byte order is little-endian or native (any order, for one-byte
    /// types); not names such as `'float64'`.
    ///
    /// ```
    /// use shmkit::DType;
    /// assert_eq!(DType::from_descr("<f8"), Some(DType::F64));
    /// assert_eq!(DType::from_descr("|u1"), Some(DType::U8));
    /// assert_eq!(DType::from_descr("d"), Some(DType::F64));
    /// assert_eq!(DType::from_descr(">f8"), None);
    /// ```
    pub fn from_descr(descr: &str) -> Option<DType> {
        let t = NumpyType::parse(descr)?;
        let kind = t.kind;
        let found = ALL.into_iter().find(|d| d.descr()[1..2] == *kind.to_string() && d.itemsize() == t.size)?;
        (!t.big_endian || t.size == 1).then_some(found)
    }
}

/// A fixed-size numpy element type, as a `.npy` header's `descr` string
/// spells it: an optional byte order (`<`, `>`, `|`, `=`) and either a
/// kind with a size in bytes (`f8`, `u1`, `U10`, `M8[ns]`) or a one-letter
/// type code (`d`, `i`, `B`, `?`). numpy accepts more spellings still
/// (`'float64'`, comma-separated structured types); shmkit refuses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NumpyType {
    /// numpy's kind character: `b i u f c m M S U V`.
    pub kind: char,
    /// Bytes per element.
    pub size: usize,
    /// Stored big-endian (`>` on a multi-byte type).
    pub big_endian: bool,
}

impl NumpyType {
    /// Parses `descr`; `None` for what is not a fixed-size type above.
    pub fn parse(descr: &str) -> Option<NumpyType> {
        let big = descr.starts_with('>');
        let body = descr.strip_prefix(['<', '>', '|', '=']).unwrap_or(descr);
        let mut chars = body.chars();
        let first = chars.next()?;
        let rest = chars.as_str();
        let (kind, size) = match (first, rest) {
            (c, "") => Self::code(c)?,
            ('m' | 'M', r) => (
                'M',
                Self::digits(r.split_once('[').filter(|(_, u)| u.ends_with(']') && u.len() > 1).map_or(r, |(d, _)| d))?,
            ),
            (k @ ('b' | 'i' | 'u' | 'f' | 'c' | 'S' | 'U' | 'V' | 'a'), r) => (k, Self::digits(r)?),
            _ => return None,
        };
        let (kind, size) = match (kind, size) {
            ('b', 1) | ('i' | 'u', 1 | 2 | 4 | 8) | ('f', 2 | 4 | 8 | 16) | ('c', 8 | 16 | 32) | ('M', 8) => {
                (kind, size)
            }
            ('S' | 'V' | 'a', n) => ('S', n),
            ('U', n) => ('U', n.checked_mul(4)?),
            _ => return None,
        };
        let kind = if first == 'm' { 'm' } else { kind };
        Some(NumpyType { kind, size, big_endian: big && size > 1 })
    }

    /// A decimal size, leading zeros allowed, as numpy reads it.
    fn digits(s: &str) -> Option<usize> {
        (!s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    }

    /// numpy's one-letter type codes (on 64-bit Linux).
    fn code(c: char) -> Option<(char, usize)> {
        Some(match c {
            '?' => ('b', 1),
            'b' => ('i', 1),
            'B' => ('u', 1),
            'h' => ('i', 2),
            'H' => ('u', 2),
            'i' => ('i', 4),
            'I' => ('u', 4),
            'l' | 'q' | 'n' | 'p' => ('i', 8),
            'L' | 'Q' | 'N' | 'P' => ('u', 8),
            'e' => ('f', 2),
            'f' => ('f', 4),
            'd' => ('f', 8),
            'g' => ('f', 16),
            'F' => ('c', 8),
            'D' => ('c', 16),
            'G' => ('c', 32),
            'c' => ('S', 1),
            'm' | 'M' => ('M', 8),
            'S' | 'a' | 'V' => ('S', 0),
            'U' => ('U', 0),
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.descr())
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A plain-data element type that maps to one numpy dtype.
///
/// Implemented for every fixed-size integer, `f32` and `f64`; sealed, so
/// that every array in a segment has a dtype numpy can read.
pub trait Element:
    bytemuck::Pod + PartialOrd + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + sealed::Sealed
{
    /// The dtype this type is stored as.
    const DTYPE: DType;
    /// What a sum of these is, as numpy sums them: `i64` for signed
    /// integers, `u64` for unsigned ones (exact, or an overflow error,
    /// where numpy wraps), `f64` for floats.
    type Sum: Serialize + DeserializeOwned + Copy + fmt::Debug + PartialEq + Send + Sync + 'static;
    /// A partial sum, carried exactly (`i128`, `u128`) for integers.
    #[doc(hidden)]
    type Partial: Serialize + DeserializeOwned + bytemuck::Pod + Default + Send + Sync + 'static;
    /// The value as f64 (rounded for 64-bit integers beyond 2^53).
    fn to_f64(self) -> f64;
    #[doc(hidden)]
    fn add_to(acc: Self::Partial, x: Self) -> Self::Partial;
    #[doc(hidden)]
    fn merge(a: Self::Partial, b: Self::Partial) -> Self::Partial;
    /// The total, if it fits `Sum`.
    #[doc(hidden)]
    fn total(p: Self::Partial) -> Option<Self::Sum>;
    #[doc(hidden)]
    fn sum_to_f64(s: Self::Sum) -> f64;
}

macro_rules! element {
    ($($t:ty => $d:ident, $sum:ty, $partial:ty);* $(;)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            type Sum = $sum;
            type Partial = $partial;
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn add_to(acc: $partial, x: $t) -> $partial {
                acc + x as $partial // cannot overflow: see `merge`
            }
            fn merge(a: $partial, b: $partial) -> $partial {
                // Integers: 2^64 partial sums of 64-bit values each fit 128 bits.
                a + b
            }
            fn total(p: $partial) -> Option<$sum> {
                element!(@total p, $sum, $partial)
            }
            fn sum_to_f64(s: $sum) -> f64 {
                s as f64
            }
        }
    )*};
    (@total $p:ident, f64, f64) => { Some($p) };
    (@total $p:ident, $sum:ty, $partial:ty) => { <$sum>::try_from($p).ok() };
}

element!(i8 => I8, i64, i128; i16 => I16, i64, i128; i32 => I32, i64, i128; i64 => I64, i64, i128;
    u8 => U8, u64, u128; u16 => U16, u64, u128; u32 => U32, u64, u128; u64 => U64, u64, u128;
    f32 => F32, f64, f64; f64 => F64, f64, f64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_descr_round_trips() {
        for d in ALL {
            assert_eq!(DType::from_descr(d.descr()), Some(d));
        }
    }

    #[test]
    fn native_and_unaligned_marks_are_accepted_only_where_valid() {
        assert_eq!(DType::from_descr("=i4"), Some(DType::I32));
        assert_eq!(DType::from_descr("<u1"), Some(DType::U8));
        assert_eq!(DType::from_descr("|f8"), Some(DType::F64), "numpy reads '|' as native");
        assert_eq!(DType::from_descr("<f08"), Some(DType::F64));
        assert_eq!(DType::from_descr("<i"), Some(DType::I32));
        assert_eq!(DType::from_descr(">f"), None);
        assert_eq!(DType::from_descr("float64"), None, "names are refused");
        assert_eq!(DType::from_descr(">u1"), Some(DType::U8));
        assert_eq!(DType::from_descr("f4"), Some(DType::F32));
        assert_eq!(DType::from_descr("<c16"), None);
        assert_eq!(DType::from_descr(""), None);
    }

    #[test]
    fn itemsize_matches_rust_size() {
        assert_eq!(<f64 as Element>::DTYPE.itemsize(), size_of::<f64>());
        assert_eq!(<i16 as Element>::DTYPE.itemsize(), size_of::<i16>());
    }
}
