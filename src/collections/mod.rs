//! Shared state that grows or is keyed, in named segments: what Python's
//! `multiprocessing.Manager().dict()` and `.list()` are for, without a
//! server process or a socket round trip per operation.
//!
//! - [`ShmMap<K, V>`]: a hash map with striped robust locks; atomic
//!   `insert`, `get`, `remove`, `modify`; survives a process killed in the
//!   middle of an operation.
//! - [`ShmVec<T>`]: an append-only list with lock-free `push` from any
//!   number of processes; an element is visible whole or not at all.
//! - [`FixedStr<N>`]: text as a fixed-size `Pod` value, for string keys.
//!
//! Both have the lifetimes of arrays (the creator's handle removes the
//! name; [`persist`](ShmMap::persist) keeps it), are opened by name alone
//! with their types checked, and show in `shmkit ls` and `shmkit inspect`.

mod dyn_map;
mod dyn_vec;
mod error;
mod header;
mod map;
mod table;
mod vec;

use std::os::fd::AsFd;

pub use crate::npy::record::FixedStr;
pub use dyn_map::DynMap;
pub use dyn_vec::{DynVec, Item};
pub use error::{MapError, PushError};
pub use map::ShmMap;
pub use vec::ShmVec;

use crate::kind::SegmentKind;
use crate::segment::info::CollectionInfo;
use crate::segment::Layout;

/// Reads a map's or list's summary through `fd` (the segment need not be
/// ours to map); `None` if it is not one, or its head does not check out.
pub(crate) fn summary(fd: impl AsFd, layout: &Layout) -> Option<CollectionInfo> {
    if !matches!(layout.kind, SegmentKind::Map | SegmentKind::List) {
        return None;
    }
    let at = layout.data_offset as u64;
    let mut bytes = [0u8; header::HEAD_LEN];
    crate::os::read_at(&fd, at, &mut bytes).ok()?;
    let head = header::Head::decode(&bytes)?;
    let read_u64 = |offset: usize| {
        let mut word = [0u8; 8];
        crate::os::read_at(&fd, at + offset as u64, &mut word).ok().map(|_| u64::from_le_bytes(word))
    };
    let len = match head.magic {
        header::Magic::List => read_u64(header::HEAD_LEN)?.min(head.capacity),
        header::Magic::Map => {
            let shape = table::Shape::new(
                head.stripes as usize,
                head.slots as usize,
                head.key_size as usize,
                head.value_size as usize,
            )
            .filter(|s| s.len == layout.data_len)?;
            (0..shape.stripes).try_fold(0u64, |n, s| Some(n.saturating_add(read_u64(shape.count_at(s))?)))?
        }
    };
    Some(CollectionInfo { len, capacity: head.capacity, recoveries: read_u64(header::RECOVERIES)? })
}
