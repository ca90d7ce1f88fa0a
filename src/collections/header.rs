//! The first 192 bytes of a map's or list's body: how it is laid out,
//! written once by its creator and checked by every opener. (Its key,
//! value and element types, as numpy dtypes, are in the segment's head:
//! see `segment::types`.)
//!
//! ```text
//!   0  magic       8 bytes, "SHMKMAP2" or "SHMKLST2"
//!   8  capacity    u64, as asked for at create
//!  16  key_size    u32 (a list's element size)
//!  20  value_size  u32 (0 for a list)
//!  24  stripes     u32 (1 for a list)
//!  28  slots       u32 per stripe (0 for a list)
//!  32  recoveries  u64, atomic: repairs after a process died mid-operation
//!  40  reserved, zero
//! ```
//!
//! Everything here comes from shared memory: [`Head::decode`] checks it
//! before any offset is computed from it.

use crate::segment::Segment;
use crate::{Error, Result};

/// Bytes of the head; the body's other parts start after it.
pub(crate) const HEAD_LEN: usize = 192;
/// Offset of the recoveries counter.
pub(crate) const RECOVERIES: usize = 32;

/// What a collection segment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Magic {
    Map,
    List,
}

impl Magic {
    fn bytes(self) -> [u8; 8] {
        match self {
            Magic::Map => *b"SHMKMAP2",
            Magic::List => *b"SHMKLST2",
        }
    }
}

/// The head's fixed fields and type names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub magic: Magic,
    pub capacity: u64,
    pub key_size: u32,
    pub value_size: u32,
    pub stripes: u32,
    pub slots: u32,
}

impl Head {
    /// The head's bytes.
    pub fn encode(&self) -> [u8; HEAD_LEN] {
        let mut out = [0u8; HEAD_LEN];
        out[0..8].copy_from_slice(&self.magic.bytes());
        out[8..16].copy_from_slice(&self.capacity.to_le_bytes());
        out[16..20].copy_from_slice(&self.key_size.to_le_bytes());
        out[20..24].copy_from_slice(&self.value_size.to_le_bytes());
        out[24..28].copy_from_slice(&self.stripes.to_le_bytes());
        out[28..32].copy_from_slice(&self.slots.to_le_bytes());
        out
    }

    /// Reads a head; `None` if the magic is neither kind's.
    pub fn decode(bytes: &[u8; HEAD_LEN]) -> Option<Head> {
        let magic = [Magic::Map, Magic::List].into_iter().find(|m| bytes[0..8] == m.bytes())?;
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        Some(Head {
            magic,
            capacity: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            key_size: u32_at(16),
            value_size: u32_at(20),
            stripes: u32_at(24),
            slots: u32_at(28),
        })
    }

    /// Reads and checks the head of `seg` against the sizes it is opened
    /// with (its types are checked by the segment's head, first).
    pub fn read_checked(seg: &Segment, want: &Head) -> Result<Head> {
        let mut bytes = [0u8; HEAD_LEN];
        if seg.data_len() < HEAD_LEN {
            return Err(Error::bad_header(seg.name(), format!("{} bytes are too few for its head", seg.data_len())));
        }
        for (from, to) in [(0, RECOVERIES), (RECOVERIES + 8, HEAD_LEN)] {
            // SAFETY: `bytes` checked that the range lies in the data; these
            // bytes are written once before the segment is published and
            // never after (the recoveries counter between them changes, and
            // is read only atomically).
            unsafe {
                std::ptr::copy_nonoverlapping(seg.bytes(from, to - from), bytes[from..to].as_mut_ptr(), to - from)
            };
        }
        let found = Head::decode(&bytes).ok_or_else(|| Error::bad_header(seg.name(), "no map or list head"))?;
        let same = found.magic == want.magic && (found.key_size, found.value_size) == (want.key_size, want.value_size);
        if !same {
            let why = format!(
                "its head says {}- and {}-byte items where its types take {} and {}",
                found.key_size, found.value_size, want.key_size, want.value_size
            );
            return Err(Error::bad_header(seg.name(), why));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_and_foreign_bytes_are_refused() {
        let head = Head { magic: Magic::Map, capacity: 1000, key_size: 8, value_size: 16, stripes: 16, slots: 96 };
        assert_eq!(Head::decode(&head.encode()), Some(head));
        assert_eq!(Head::decode(&[0u8; HEAD_LEN]), None);
    }
}
