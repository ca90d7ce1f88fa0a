//! `SegmentKind`: what a segment holds. A leaf module: the error type and
//! the segment core both name kinds, and neither is imported here.

use std::fmt;

/// What a shmkit segment holds, as its trailer records. Opening a segment
/// as another kind fails with [`Error::WrongKind`](crate::Error::WrongKind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SegmentKind {
    /// An n-dimensional array (also any plain `.npy`).
    Array,
    /// A [`ShmMutex`](crate::sync::ShmMutex).
    Mutex,
    /// A [`ShmRwLock`](crate::sync::ShmRwLock).
    RwLock,
    /// A [`ShmEvent`](crate::sync::ShmEvent).
    Event,
    /// A [`ShmBarrier`](crate::sync::ShmBarrier).
    Barrier,
    /// A [`ShmCounter`](crate::sync::ShmCounter).
    Counter,
    /// A [`ShmQueue`](crate::sync::ShmQueue).
    Queue,
    /// A pool's per-helper status words (internal to [`Pool`](crate::Pool)).
    Pool,
    /// A [`ShmMap`](crate::collections::ShmMap).
    Map,
    /// A [`ShmVec`](crate::collections::ShmVec).
    List,
    /// A stream of arrays ([`stream`](crate::stream)): a `.npy` array of
    /// slots, then the stream's control block.
    Stream,
    /// A kind this version does not know.
    Unknown(u32),
}

const KNOWN: [SegmentKind; 11] = [
    SegmentKind::Array,
    SegmentKind::Mutex,
    SegmentKind::RwLock,
    SegmentKind::Event,
    SegmentKind::Barrier,
    SegmentKind::Counter,
    SegmentKind::Queue,
    SegmentKind::Pool,
    SegmentKind::Map,
    SegmentKind::List,
    SegmentKind::Stream,
];

impl SegmentKind {
    /// The number stored in the trailer.
    pub(crate) fn code(self) -> u32 {
        match self {
            SegmentKind::Array => 0,
            SegmentKind::Mutex => 1,
            SegmentKind::RwLock => 2,
            SegmentKind::Event => 3,
            SegmentKind::Barrier => 4,
            SegmentKind::Counter => 5,
            SegmentKind::Queue => 6,
            SegmentKind::Pool => 7,
            SegmentKind::Map => 8,
            SegmentKind::List => 9,
            SegmentKind::Stream => 10,
            SegmentKind::Unknown(n) => n,
        }
    }

    /// The kind stored as `code`.
    pub(crate) fn from_code(code: u32) -> SegmentKind {
        KNOWN.into_iter().find(|k| k.code() == code).unwrap_or(SegmentKind::Unknown(code))
    }

    /// The kind's name after "a" or "an", for messages: "an array", "a mutex".
    pub(crate) fn with_article(self) -> String {
        let name = self.to_string();
        match name.starts_with(['a', 'e', 'i', 'o', 'u']) {
            true => format!("an {name}"),
            false => format!("a {name}"),
        }
    }

    /// Every kind this version knows, for exhaustive tests.
    pub fn all() -> impl Iterator<Item = SegmentKind> {
        KNOWN.into_iter()
    }
}

impl fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentKind::Unknown(n) => write!(f, "kind-{n}"),
            other => write!(f, "{}", format!("{other:?}").to_lowercase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_kept() {
        for k in SegmentKind::all() {
            assert_eq!(SegmentKind::from_code(k.code()), k);
        }
        assert_eq!(SegmentKind::from_code(99), SegmentKind::Unknown(99));
        assert_eq!(SegmentKind::RwLock.to_string(), "rwlock");
    }
}
