//! Element types and their numpy dtype strings.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The element types a shared array can hold, named as numpy names them.
///
/// Byte order is always little-endian (shmkit refuses big-endian hosts at
/// compile time), so `'<'` and the native `'='` are the same thing here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Accepts the byte-order marks numpy may write for a little-endian
    /// array: `<`, `=` (native), and `|` (not applicable) for 1-byte types.
    ///
    /// ```
    /// use shmkit::DType;
    /// assert_eq!(DType::from_descr("<f8"), Some(DType::F64));
    /// assert_eq!(DType::from_descr("|u1"), Some(DType::U8));
    /// assert_eq!(DType::from_descr(">f8"), None);
    /// ```
    pub fn from_descr(descr: &str) -> Option<DType> {
        let (order, kind) = descr.split_at_checked(1)?;
        ALL.into_iter().find(|d| {
            let ok_order = order == "<" || order == "=" || (order == "|" && d.itemsize() == 1);
            ok_order && &d.descr()[1..] == kind
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
    /// The value as f64 (rounded for 64-bit integers beyond 2^53).
    fn to_f64(self) -> f64;
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}

element!(i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16,
    u32 => U32, u64 => U64, f32 => F32, f64 => F64);

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
        assert_eq!(DType::from_descr("|f8"), None);
        assert_eq!(DType::from_descr("<c16"), None);
        assert_eq!(DType::from_descr(""), None);
    }

    #[test]
    fn itemsize_matches_rust_size() {
        assert_eq!(<f64 as Element>::DTYPE.itemsize(), size_of::<f64>());
        assert_eq!(<i16 as Element>::DTYPE.itemsize(), size_of::<i16>());
    }
}
