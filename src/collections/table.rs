//! Where everything of a `ShmMap` lies in its segment, the key hash, and
//! the per-stripe journal that makes a dead writer's work undoable.
//!
//! ```text
//! head      192 bytes (see `header`)
//! stripes   S × 128 bytes: robust mutex (64), entry count u64, journal u64
//! backups   S × V bytes (rounded up to 8): a value about to be overwritten
//! slots     S × P slots, 64-aligned: state u32, 4 bytes pad, key, value
//! ```
//!
//! Each stripe is an open-addressing table of its own (linear probing over
//! its P slots), so one lock covers everything an operation touches.

use crate::collections::header::HEAD_LEN;
use crate::segment::align_up;

/// Bytes per stripe header: its lock and bookkeeping, two cache lines.
const STRIPE_LEN: usize = 128;
/// Offsets within a stripe header.
const COUNT: usize = 64;
const JOURNAL: usize = 72;
/// Most stripes a map has (`create` picks fewer for small maps).
const MAX_STRIPES: usize = 256;

/// A slot's state word.
pub(crate) const EMPTY: u32 = 0;
pub(crate) const FULL: u32 = 1;
/// Removed: probes go on past it, inserts may reuse it. Any value other
/// than these (another process scribbled) is treated the same way.
pub(crate) const GONE: u32 = 2;

/// The offsets of one map's parts, from its stripe count, slots per
/// stripe and key and value sizes; every one checked for overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub stripes: usize,
    pub slots: usize,
    key: usize,
    value: usize,
    slot_len: usize,
    backups_at: usize,
    slots_at: usize,
    /// Bytes of the whole body.
    pub len: usize,
}

impl Shape {
    /// The shape `create` gives a map that must hold `capacity` entries:
    /// fewer stripes for small maps, and per stripe the average share plus
    /// a margin for keys that hash unevenly (about 1.3× for large maps).
    pub fn for_capacity(capacity: usize, key: usize, value: usize) -> Option<Shape> {
        let stripes = (capacity / 64).checked_next_power_of_two()?.clamp(1, MAX_STRIPES);
        let share = capacity.div_ceil(stripes);
        let margin = share / 4 + 8 * (share as f64).sqrt() as usize + 16;
        Shape::new(stripes, share.checked_add(margin)?, key, value)
    }

    /// The shape of a map with these parameters; `None` if they are out of
    /// range (as a head another process wrote may be) or overflow.
    pub fn new(stripes: usize, slots: usize, key: usize, value: usize) -> Option<Shape> {
        // At most MAX_STRIPES: `snapshot` holds every stripe's lock, and the
        // kernel frees only 2048 robust locks of a thread that dies.
        if !stripes.is_power_of_two() || stripes > MAX_STRIPES || slots == 0 || slots > u32::MAX as usize {
            return None;
        }
        let slot_len = round8(key.checked_add(value)?.checked_add(8)?)?;
        let backups_at = HEAD_LEN.checked_add(stripes.checked_mul(STRIPE_LEN)?)?;
        let slots_at = align_up(backups_at.checked_add(stripes.checked_mul(round8(value)?)?)?)?;
        let len = slots_at.checked_add(stripes.checked_mul(slots)?.checked_mul(slot_len)?)?;
        (len <= isize::MAX as usize).then_some(Shape {
            stripes,
            slots,
            key,
            value,
            slot_len,
            backups_at,
            slots_at,
            len,
        })
    }

    /// Offset of stripe `s`'s mutex (64-aligned: the data is).
    pub fn mutex_at(&self, s: usize) -> usize {
        HEAD_LEN + s * STRIPE_LEN
    }

    /// Offset of stripe `s`'s entry count.
    pub fn count_at(&self, s: usize) -> usize {
        self.mutex_at(s) + COUNT
    }

    /// Offset of stripe `s`'s journal word.
    pub fn journal_at(&self, s: usize) -> usize {
        self.mutex_at(s) + JOURNAL
    }

    /// Offset of stripe `s`'s backup value.
    pub fn backup_at(&self, s: usize) -> usize {
        self.backups_at + s * round8(self.value).expect("checked in new")
    }

    /// Offset of slot `i` of stripe `s`: its state word; the key follows
    /// at +8, the value after the key.
    pub fn slot_at(&self, s: usize, i: usize) -> usize {
        self.slots_at + (s * self.slots + i) * self.slot_len
    }

    /// Offset of the key in a slot at `slot`.
    pub fn key_at(&self, slot: usize) -> usize {
        slot + 8
    }

    /// Offset of the value in a slot at `slot`.
    pub fn value_at(&self, slot: usize) -> usize {
        slot + 8 + self.key
    }

    /// The stripe and the first slot to probe for a key hashing to `h`.
    pub fn place(&self, h: u64) -> (usize, usize) {
        let stripe = (h >> 40) as usize & (self.stripes - 1);
        let start = ((h & 0xffff_ffff) * self.slots as u64) >> 32;
        (stripe, start as usize)
    }
}

fn round8(n: usize) -> Option<usize> {
    Some(n.checked_add(7)? & !7)
}

/// A key's hash: the same in every process and every build (no random
/// seed: processes must agree), mixing 8 bytes at a time.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = (h ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    // The finaliser of MurmurHash3: every input bit reaches every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// What a stripe's writer was doing, recorded before it changes anything
/// a reader could see, so that whoever next takes the lock after it died
/// can undo or finish it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Filling a free slot, made visible by its state word last.
    Insert,
    /// Overwriting a value, whose old bytes are in the stripe's backup.
    Overwrite,
    /// Marking a slot removed.
    Remove,
}

/// A journal word: `op << 56 | slot`; 0 when no operation is under way.
pub(crate) fn journal(op: Op, slot: usize) -> u64 {
    let code = match op {
        Op::Insert => 1u64,
        Op::Overwrite => 2,
        Op::Remove => 3,
    };
    code << 56 | slot as u64
}

/// Reads a journal word, checked against the stripe's slot count (it
/// comes from shared memory); `None` for none or nonsense.
pub(crate) fn read_journal(word: u64, slots: usize) -> Option<(Op, usize)> {
    let slot = (word & ((1 << 56) - 1)) as usize;
    let op = match word >> 56 {
        1 => Op::Insert,
        2 => Op::Overwrite,
        3 => Op::Remove,
        _ => return None,
    };
    (slot < slots).then_some((op, slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_fit_their_capacity_and_refuse_nonsense() {
        for cap in [1, 10, 1000, 2_000_000] {
            let s = Shape::for_capacity(cap, 8, 8).unwrap();
            assert!(s.stripes * s.slots >= cap + cap / 4, "{cap}: {s:?}");
            assert_eq!(s.slot_at(0, 0) % 64, 0);
            assert_eq!(s.slot_at(s.stripes - 1, s.slots - 1) + 24, s.len);
        }
        assert!(Shape::new(3, 10, 8, 8).is_none(), "stripes must be a power of two");
        assert!(Shape::new(4, 0, 8, 8).is_none());
        assert!(Shape::new(256, u32::MAX as usize, 1 << 40, 8).is_none(), "overflow");
        assert!(Shape::new(512, 10, 8, 8).is_none(), "more stripes than create makes");
        assert!(Shape::for_capacity(usize::MAX, 8, 8).is_none());
    }

    #[test]
    fn the_hash_spreads_sequential_keys_over_stripes_and_slots() {
        let shape = Shape::for_capacity(1 << 20, 8, 8).unwrap();
        let mut per_stripe = vec![0usize; shape.stripes];
        for k in 0u64..1 << 20 {
            let (s, start) = shape.place(hash(&k.to_le_bytes()));
            assert!(start < shape.slots);
            per_stripe[s] += 1;
        }
        let (lo, hi) = (per_stripe.iter().min().unwrap(), per_stripe.iter().max().unwrap());
        assert!(*hi < shape.slots, "a stripe overflowed: {hi} of {}", shape.slots);
        assert!(hi - lo < 400, "uneven: {lo}..{hi}");
    }

    #[test]
    fn journal_words_round_trip_and_nonsense_reads_as_none() {
        assert_eq!(read_journal(journal(Op::Overwrite, 17), 20), Some((Op::Overwrite, 17)));
        assert_eq!(read_journal(journal(Op::Remove, 20), 20), None, "slot out of range");
        assert_eq!(read_journal(0, 20), None);
        assert_eq!(read_journal(9 << 56, 20), None);
    }
}
