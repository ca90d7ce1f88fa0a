//! `FixedStr<N>`: a string of at most `N - 2` bytes in `N` bytes, so that
//! file names and other text can be map keys and values.

use std::fmt;

use crate::{Error, Result};

/// A UTF-8 string stored in exactly `N` bytes: a little-endian `u16`
/// length, then the bytes, then zeros. `Pod`, so it can be a key or value
/// of a [`ShmMap`](super::ShmMap) or an element of a
/// [`ShmVec`](super::ShmVec). Equality (and a map's key comparison) is
/// by all `N` bytes, which for values made by [`new`](Self::new) or
/// [`format`](Self::format) means by their strings. Holds up to `N - 2`
/// bytes (and at most 65535).
///
/// ```
/// use shmkit::collections::FixedStr;
/// let name = FixedStr::<32>::new("results/run-7.npy")?;
/// assert_eq!(name.as_str(), "results/run-7.npy");
/// assert!(FixedStr::<8>::new("far too long for eight").is_err());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct FixedStr<const N: usize>([u8; N]);

// SAFETY: a transparent wrapper of `[u8; N]`, which is Zeroable and Pod:
// no padding, every bit pattern allowed (`as_str` checks what it reads).
unsafe impl<const N: usize> bytemuck::Zeroable for FixedStr<N> {}
// SAFETY: as above.
unsafe impl<const N: usize> bytemuck::Pod for FixedStr<N> {}

impl<const N: usize> FixedStr<N> {
    /// Bytes of string a `FixedStr<N>` holds.
    pub const MAX_LEN: usize = if N < 2 {
        0
    } else if N - 2 > 65535 {
        65535
    } else {
        N - 2
    };

    /// `s` in `N` bytes; [`Error::InvalidArgument`] if it is longer than
    /// [`MAX_LEN`](Self::MAX_LEN).
    pub fn new(s: &str) -> Result<Self> {
        if s.len() > Self::MAX_LEN {
            let why = format!("{:?} is {} bytes, more than the {} a FixedStr<{N}> holds", s, s.len(), Self::MAX_LEN);
            return Err(Error::InvalidArgument(why));
        }
        let mut bytes = [0u8; N];
        bytes[..2].copy_from_slice(&(s.len() as u16).to_le_bytes());
        bytes[2..2 + s.len()].copy_from_slice(s.as_bytes());
        Ok(FixedStr(bytes))
    }

    /// Formats `args` straight into the `N` bytes, with no allocation
    /// (`FixedStr::<24>::format(format_args!("processed_{k}"))`);
    /// [`Error::InvalidArgument`] if the text is longer than
    /// [`MAX_LEN`](Self::MAX_LEN).
    pub fn format(args: fmt::Arguments<'_>) -> Result<Self> {
        struct Writer<'a> {
            out: &'a mut [u8],
            len: usize,
        }
        impl fmt::Write for Writer<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let end = self.len.checked_add(s.len()).filter(|&e| e <= self.out.len()).ok_or(fmt::Error)?;
                self.out[self.len..end].copy_from_slice(s.as_bytes());
                self.len = end;
                Ok(())
            }
        }
        let mut bytes = [0u8; N];
        let max = Self::MAX_LEN;
        let mut w = Writer { out: bytes.get_mut(2..2 + max).unwrap_or(&mut []), len: 0 };
        if fmt::write(&mut w, args).is_err() {
            let why = format!("{:?} is longer than the {max} bytes a FixedStr<{N}> holds", args.to_string());
            return Err(Error::InvalidArgument(why));
        }
        let len = w.len as u16;
        if N >= 2 {
            bytes[..2].copy_from_slice(&len.to_le_bytes());
        }
        Ok(FixedStr(bytes))
    }

    /// The string. Bytes another process wrote that are not a valid
    /// `FixedStr` read as their longest valid UTF-8 prefix.
    pub fn as_str(&self) -> &str {
        let len = if N < 2 { 0 } else { u16::from_le_bytes([self.0[0], self.0[1]]) as usize };
        let bytes = self.0.get(2..2 + len.min(Self::MAX_LEN)).unwrap_or(&[]);
        match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid up to here"),
        }
    }
}

impl<const N: usize> fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> TryFrom<&str> for FixedStr<N> {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        FixedStr::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_bad_bytes_read_safely() {
        assert_eq!(FixedStr::<16>::new("héllo").unwrap().as_str(), "héllo");
        assert_eq!(FixedStr::<16>::new("").unwrap().as_str(), "");
        assert_eq!(FixedStr::<16>::new(&"x".repeat(14)).unwrap().as_str().len(), 14);
        assert!(FixedStr::<16>::new(&"x".repeat(15)).is_err());
        assert!(FixedStr::<1>::new("a").is_err());
        let mut scribbled = FixedStr::<8>::new("ab").unwrap();
        bytemuck::bytes_of_mut(&mut scribbled).copy_from_slice(&[255, 255, b'o', b'k', 0xff, b'x', 0, 0]);
        assert_eq!(scribbled.as_str(), "ok", "a huge length is clamped, invalid UTF-8 cut");
        assert_eq!(FixedStr::<16>::new("a").unwrap(), FixedStr::<16>::new("a").unwrap());
        let k = 42;
        assert_eq!(
            FixedStr::<24>::format(format_args!("processed_{k}")).unwrap(),
            FixedStr::new("processed_42").unwrap()
        );
        assert!(FixedStr::<8>::format(format_args!("{}", "x".repeat(7))).is_err());
        assert!(FixedStr::<1>::format(format_args!("")).is_ok_and(|s| s.as_str().is_empty()));
    }
}
