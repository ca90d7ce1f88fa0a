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
//! The `.npy` header itself is `crate::npy`'s.

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
const TRAILER_MAGIC: &[u8; 8] = b"SHMKIT\0\x02";
const LAYOUT_VERSION: u32 = 3;

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
