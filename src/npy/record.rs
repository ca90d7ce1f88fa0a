//! `Record`: a plain-data value with a numpy dtype, what locks, queues,
//! maps and lists hold; `FixedStr`, text as numpy's `S` type; and the
//! [`record!`](crate::record) macro for structures.

use std::fmt;

/// A plain-data type with a numpy dtype: what [`ShmMutex`](crate::sync::ShmMutex),
/// [`ShmRwLock`](crate::sync::ShmRwLock), queues and the collections hold.
///
/// The dtype is recorded in the segment, so a process that opens it with
/// another type gets a `WrongType` error instead of misread bytes, and a
/// Python process opens it with the matching numpy dtype. Implemented for
/// the integers, `f32`, `f64`, arrays of records (`[u64; 4]` is `(4,)<u8`)
/// and [`FixedStr`]; [`record!`](crate::record) declares structures.
///
/// ```
/// use shmkit::Record;
/// assert_eq!(u64::dtype(), "<u8");
/// assert_eq!(<[f32; 3]>::dtype(), "(3,)<f4");
/// assert_eq!(shmkit::FixedStr::<24>::dtype(), "|S24");
/// ```
pub trait Record: bytemuck::Pod + Send + Sync {
    /// This type's numpy dtype, spelled as `numpy.dtype(...).str` spells it
    /// for plain types (`<u8`), `(4,)<u8` for arrays, and as `dtype.descr`
    /// for structures (`[('id', '<u8'), ('x', '<f8')]`).
    fn dtype() -> String;
}

macro_rules! record_numbers {
    ($($t:ty => $s:literal),*) => {$(
        impl Record for $t {
            fn dtype() -> String {
                $s.to_owned()
            }
        }
    )*};
}

record_numbers!(i8 => "|i1", i16 => "<i2", i32 => "<i4", i64 => "<i8", u8 => "|u1", u16 => "<u2",
    u32 => "<u4", u64 => "<u8", f32 => "<f4", f64 => "<f8");

impl<T: Record, const N: usize> Record for [T; N]
where
    [T; N]: bytemuck::Pod,
{
    fn dtype() -> String {
        use super::descr::Descr;
        const { assert!(N > 0, "a record array needs at least one item (numpy has no zero-length field)") };
        match Descr::parse(&T::dtype()) {
            Ok(Descr::Array(base, mut shape)) => {
                shape.insert(0, N);
                Descr::Array(base, shape).tag()
            }
            Ok(d) => Descr::Array(Box::new(d), vec![N]).tag(),
            // Kept as written: the check of the tag refuses it, naming the type.
            Err(_) => format!("({N},){}", T::dtype()),
        }
    }
}

/// Text in exactly `N` bytes, as numpy's `S{N}` type keeps it: UTF-8
/// bytes, then zeros; the string ends at the last non-zero byte (numpy
/// strips trailing NULs too). `Pod`, so it can be a key or value of a
/// [`ShmMap`](crate::collections::ShmMap), an element of a
/// [`ShmVec`](crate::collections::ShmVec) or a field of a record; Python
/// sees it as `bytes`. Equality is by all `N` bytes.
///
/// ```
/// use shmkit::FixedStr;
/// let name = FixedStr::<32>::new("results/run-7.npy")?;
/// assert_eq!(name.as_str(), Ok("results/run-7.npy"));
/// assert!(FixedStr::<8>::new("far too long for eight").is_err());
/// # Ok::<(), shmkit::StrTooLong>(())
/// ```
///
/// A `FixedStr<0>` holds nothing and is no record:
///
/// ```compile_fail
/// use shmkit::Record;
/// let _ = shmkit::FixedStr::<0>::dtype();
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct FixedStr<const N: usize>([u8; N]);

// SAFETY: a transparent wrapper of `[u8; N]`, which is Zeroable and Pod:
// no padding, every bit pattern allowed (`as_str` checks what it reads).
unsafe impl<const N: usize> bytemuck::Zeroable for FixedStr<N> {}
// SAFETY: as above.
unsafe impl<const N: usize> bytemuck::Pod for FixedStr<N> {}

impl<const N: usize> Record for FixedStr<N> {
    fn dtype() -> String {
        const { assert!(N > 0, "a FixedStr needs at least one byte (numpy's S0 holds nothing)") };
        format!("|S{N}")
    }
}

/// A string did not fit a [`FixedStr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a text of {len} bytes does not fit a FixedStr<{max}>; use a larger FixedStr")]
pub struct StrTooLong {
    /// The text's length in bytes (at least, for formatted text).
    pub len: usize,
    /// The bytes a `FixedStr` of this size holds.
    pub max: usize,
}

impl<const N: usize> FixedStr<N> {
    /// Bytes of text a `FixedStr<N>` holds.
    pub const MAX_LEN: usize = N;

    /// `s` in `N` bytes; [`StrTooLong`] if it is longer.
    pub fn new(s: &str) -> Result<Self, StrTooLong> {
        Self::format(format_args!("{s}"))
    }

    /// Formats `args` straight into the `N` bytes, with no allocation
    /// (`FixedStr::<24>::format(format_args!("processed_{k}"))`);
    /// [`StrTooLong`] if the text is longer than `N` bytes.
    pub fn format(args: fmt::Arguments<'_>) -> Result<Self, StrTooLong> {
        struct Writer<'a> {
            out: &'a mut [u8],
            len: usize,
            over: usize,
        }
        impl fmt::Write for Writer<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                match self.len.checked_add(s.len()).filter(|&e| e <= self.out.len()) {
                    Some(end) => {
                        self.out[self.len..end].copy_from_slice(s.as_bytes());
                        self.len = end;
                        Ok(())
                    }
                    None => {
                        self.over = self.len.saturating_add(s.len());
                        Err(fmt::Error)
                    }
                }
            }
        }
        let mut bytes = [0u8; N];
        let mut w = Writer { out: &mut bytes, len: 0, over: 0 };
        match fmt::write(&mut w, args) {
            Ok(()) => Ok(FixedStr(bytes)),
            Err(_) => Err(StrTooLong { len: w.over, max: N }),
        }
    }

    /// The text's bytes: up to the last non-zero byte.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        &self.0[..end]
    }

    /// The text, if its bytes are UTF-8 (another process, numpy say, may
    /// have written any bytes).
    pub fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(self.as_bytes())
    }

    /// The text, with bytes that are not UTF-8 replaced by `U+FFFD`.
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl<const N: usize> fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.to_string_lossy(), f)
    }
}

impl<const N: usize> TryFrom<&str> for FixedStr<N> {
    type Error = StrTooLong;
    fn try_from(s: &str) -> Result<Self, StrTooLong> {
        FixedStr::new(s)
    }
}

/// Declares a structure that is a [`Record`]: `#[repr(C)]`, `Copy`, `Pod`
/// (checked: every field a `Record`, no padding), with the numpy dtype of
/// its fields in order, so Python opens queues and maps of it with the
/// matching structured dtype.
///
/// ```
/// shmkit::record! {
///     /// A unit of work.
///     #[derive(Debug, PartialEq)]
///     pub struct Work {
///         pub id: u64,
///         pub weight: f64,
///         pub tag: shmkit::FixedStr<16>,
///     }
/// }
/// use shmkit::Record;
/// assert_eq!(Work::dtype(), "[('id', '<u8'), ('weight', '<f8'), ('tag', '|S16')]");
/// ```
///
/// A field order that leaves padding does not compile (order fields from
/// the largest alignment down, or add explicit padding fields). Fields take
/// doc comments only: an attribute such as `#[cfg(...)]` could remove a
/// field after the padding check counted it.
///
/// ```compile_fail
/// shmkit::record! { pub struct Gappy { pub a: u8, pub b: u16 } } // a padding byte after `a`
/// ```
///
/// ```compile_fail
/// shmkit::record! { pub struct Hidden { pub a: u8, #[cfg(any())] pub b: u8, pub c: u16 } }
/// ```
#[macro_export]
macro_rules! record {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[doc = $fdoc:expr])* $fvis:vis $field:ident : $ty:ty),+ $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy)]
        $vis struct $name { $($(#[doc = $fdoc])* $fvis $field: $ty),+ }

        const _: () = {
            assert!(
                ::core::mem::size_of::<$name>() == 0 $(+ ::core::mem::size_of::<$ty>())+,
                concat!("record ", stringify!($name), " has padding: reorder its fields or add padding fields")
            );
            // Each field right after the one before: no padding anywhere, and
            // every field counted above is a field of the struct as compiled.
            assert!(
                $crate::__back_to_back(
                    &[$(::core::mem::offset_of!($name, $field)),+],
                    &[$(::core::mem::size_of::<$ty>()),+],
                ),
                concat!("record ", stringify!($name), " has padding: reorder its fields or add padding fields")
            );
            #[allow(dead_code)] // type-checked, never called
            fn fields_are_records() { $($crate::__is_record::<$ty>();)+ }
        };

        // SAFETY: repr(C) with no padding (asserted above), and every field
        // is Pod (a Record): any bytes are a valid value, and zero is one.
        unsafe impl $crate::bytemuck::Zeroable for $name {}
        // SAFETY: as above; the type is Copy and 'static (no lifetimes).
        unsafe impl $crate::bytemuck::Pod for $name {}

        impl $crate::Record for $name {
            fn dtype() -> ::std::string::String {
                $crate::__struct_dtype(&[$((stringify!($field), <$ty as $crate::Record>::dtype())),+])
            }
        }
    };
}

/// `T`'s dtype in canonical form, checked against `T`'s size: a
/// hand-written [`Record`] impl that describes another layout is refused.
pub(crate) fn dtype_of<T: Record>() -> crate::Result<String> {
    let tag = T::dtype();
    let bad = |why: String| {
        crate::Error::InvalidArgument(format!("{}'s Record dtype {tag:?} {why}", std::any::type_name::<T>()))
    };
    let descr = super::descr::Descr::parse(&tag).map_err(bad)?;
    let canonical = descr.tag();
    // Stored canonical, and read back through the same length limit.
    super::descr::Descr::parse(&canonical).map_err(|e| bad(format!("in numpy's spelling: {e}")))?;
    match descr.itemsize() {
        Some(n) if n == size_of::<T>() => Ok(canonical),
        n => Err(bad(format!("takes {n:?} bytes, the type {}", size_of::<T>()))),
    }
}

/// A dtype given at run time (by Python, say): its canonical tag and its
/// size in bytes; `InvalidArgument`, naming what shmkit keeps, if it is
/// none of them (or holds nothing).
pub(crate) fn dtype_at_run_time(tag: &str) -> crate::Result<(String, usize)> {
    let bad = |why: String| {
        crate::Error::InvalidArgument(format!(
            "dtype {tag:?} {why}: records hold fixed-size numpy types (integers, floats, complex, bool, 'S<n>', \
             'U<n>', sub-arrays and structures of them), little-endian"
        ))
    };
    let descr = super::descr::Descr::parse(tag).map_err(bad)?;
    let canonical = descr.tag();
    super::descr::Descr::parse(&canonical).map_err(|e| bad(format!("in numpy's spelling: {e}")))?;
    match descr.itemsize() {
        Some(n) if n > 0 => Ok((canonical, n)),
        _ => Err(bad("holds nothing".into())),
    }
}

/// For [`record!`](crate::record): true if each field starts where the one
/// before it ends (`offsets` in declaration order, from 0).
#[doc(hidden)]
pub const fn __back_to_back(offsets: &[usize], sizes: &[usize]) -> bool {
    let (mut i, mut at) = (0, 0);
    while i < offsets.len() {
        if offsets[i] != at {
            return false;
        }
        at += sizes[i];
        i += 1;
    }
    true
}

/// For [`record!`](crate::record): checks at compile time that `T` is a record.
#[doc(hidden)]
pub fn __is_record<T: Record>() {}

/// For [`record!`](crate::record): a structure's dtype from its fields'.
#[doc(hidden)]
pub fn __struct_dtype(fields: &[(&str, String)]) -> String {
    super::descr::struct_tag(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_strs_are_numpy_s_values() {
        assert_eq!(FixedStr::<16>::new("héllo").unwrap().as_str(), Ok("héllo"));
        assert_eq!(FixedStr::<16>::new("").unwrap().as_bytes(), b"");
        assert_eq!(FixedStr::<16>::new(&"x".repeat(16)).unwrap().as_bytes().len(), 16, "all N bytes, no prefix");
        assert_eq!(FixedStr::<16>::new(&"x".repeat(17)), Err(StrTooLong { len: 17, max: 16 }));
        let mut scribbled = FixedStr::<8>::new("ab").unwrap();
        bytemuck::bytes_of_mut(&mut scribbled).copy_from_slice(&[b'o', b'k', 0xff, 0, 0, 0, 0, 0]);
        assert!(scribbled.as_str().is_err(), "not UTF-8");
        assert_eq!(scribbled.to_string_lossy(), "ok\u{fffd}");
        let k = 42;
        assert_eq!(FixedStr::<24>::format(format_args!("processed_{k}")), FixedStr::new("processed_42"));
        assert!(FixedStr::<8>::format(format_args!("{}", "x".repeat(9))).is_err());
        assert_eq!(FixedStr::<24>::dtype(), "|S24");
    }

    #[test]
    fn arrays_of_records_nest() {
        assert_eq!(<[u64; 4]>::dtype(), "(4,)<u8");
        assert_eq!(<[[f32; 3]; 2]>::dtype(), "(2, 3)<f4");
    }

    /// A hand-written `Record` whose dtype is no numpy dtype: records that
    /// contain it get an error where they are used, never a panic.
    #[derive(Clone, Copy)]
    #[repr(transparent)]
    struct Odd(u32);
    // SAFETY: a transparent u32.
    unsafe impl bytemuck::Zeroable for Odd {}
    // SAFETY: as above.
    unsafe impl bytemuck::Pod for Odd {}
    impl Record for Odd {
        fn dtype() -> String {
            "<q9".into()
        }
    }
    crate::record! {
        struct HoldsOdd { odd: Odd }
    }

    #[test]
    fn a_bad_hand_written_dtype_is_an_error_not_a_panic() {
        assert!(matches!(dtype_of::<HoldsOdd>(), Err(crate::Error::InvalidArgument(_))));
        assert!(matches!(dtype_of::<[Odd; 2]>(), Err(crate::Error::InvalidArgument(_))));
    }
}
