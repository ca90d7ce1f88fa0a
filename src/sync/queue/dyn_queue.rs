//! `DynQueue`: a queue whose records are a numpy dtype chosen at run time,
//! sent and received as bytes; [`ShmQueue<T>`](super::ShmQueue) is its
//! typed face.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::core::{Core, CAPACITY, ITEM_SIZE, RECEIVERS, RING, ROLES, SENDERS};
use super::roles::{DynReceiver, DynSender};
use crate::kind::SegmentKind;
use crate::npy::record::dtype_at_run_time;
use crate::segment::slots::SlotTable;
use crate::segment::{liveness, Segment};
use crate::sync::raw::{RawMutex, Wait};
use crate::sync::Timeout;
use crate::{Error, Result};

/// A bounded queue in a named segment whose records are a numpy dtype
/// chosen at run time, sent and received as bytes: the engine under
/// [`ShmQueue`](super::ShmQueue), for bindings to languages without Rust's
/// types. Everything `ShmQueue` promises holds here too.
///
/// ```
/// use shmkit::sync::DynQueue;
/// let q = DynQueue::create_unique("|S4", 8)?;
/// let (tx, rx) = (q.sender()?, q.receiver()?);
/// tx.send(b"ping").unwrap();
/// assert_eq!(rx.recv().unwrap(), b"ping");
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct DynQueue {
    core: Arc<Core>,
}

impl DynQueue {
    /// Creates queue segment `name` with room for `capacity` records of
    /// `dtype` (a numpy dtype string).
    pub fn create(name: &str, dtype: &str, capacity: u64) -> Result<Self> {
        Self::create_typed(name, dtype_at_run_time(dtype)?, capacity)
    }

    /// Like [`create`](Self::create), under a fresh unique name.
    pub fn create_unique(dtype: &str, capacity: u64) -> Result<Self> {
        let item = dtype_at_run_time(dtype)?;
        crate::name::retry_unique(|n| Self::create_typed(n, item.clone(), capacity))
    }

    fn len_for(capacity: u64, size: usize) -> Option<usize> {
        usize::try_from(capacity).ok()?.checked_mul(size)?.checked_add(RING)
    }

    /// Creates it with a canonical `(tag, size)` record type.
    pub(super) fn create_typed(name: &str, item: (String, usize), capacity: u64) -> Result<Self> {
        let len = Self::len_for(capacity, item.1).filter(|_| capacity > 0);
        let len = len.ok_or_else(|| Error::InvalidArgument(format!("a queue of {capacity} records of this size")))?;
        let types = [("record", item.0.clone())];
        let locked = crate::sync::create_locked(name, SegmentKind::Queue, &types, len, |seg| {
            seg.atomic_u64(CAPACITY).store(capacity, Ordering::Relaxed);
            seg.atomic_u64(ITEM_SIZE).store(item.1 as u64, Ordering::Relaxed);
        })?;
        Ok(Self::wrap(locked, capacity, item))
    }

    /// Opens queue segment `name`, whatever its record dtype (see
    /// [`dtype`](Self::dtype)).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_expecting(name, None)
    }

    /// Opens it, refusing it ([`Error::WrongType`]) unless its records are
    /// exactly `types`.
    pub(super) fn open_expecting(name: &str, types: Option<&[(&str, String); 1]>) -> Result<Self> {
        let seg = Segment::open(name, SegmentKind::Queue)?;
        if let Some(t) = types {
            seg.check_types(t)?;
        }
        let tag = seg.layout().types.iter().find(|(role, _)| role == "record").map(|(_, t)| t.clone());
        let tag = tag.ok_or_else(|| Error::bad_header(name, "it records no record type"))?;
        let item = dtype_at_run_time(&tag)?;
        if seg.data_len() < RING {
            return Err(Error::bad_header(name, format!("{} bytes cannot hold a queue", seg.data_len())));
        }
        let capacity = seg.atomic_u64(CAPACITY).load(Ordering::Relaxed);
        let size = seg.atomic_u64(ITEM_SIZE).load(Ordering::Relaxed);
        if size != item.1 as u64 || Self::len_for(capacity, item.1) != Some(seg.data_len()) || capacity == 0 {
            let found = format!("records of {size} bytes, capacity {capacity}, in {} bytes", seg.data_len());
            return Err(Error::bad_header(name, format!("a queue of {found} does not add up")));
        }
        Ok(Self::wrap(crate::sync::attach_lock(seg), capacity, item))
    }

    fn wrap((seg, lock): (Segment, RawMutex), capacity: u64, item: (String, usize)) -> Self {
        let senders = SlotTable::new(SENDERS, ROLES, liveness::SLOTS);
        let receivers = SlotTable::new(RECEIVERS, ROLES, liveness::SLOTS + ROLES as u64);
        DynQueue { core: Arc::new(Core { seg, lock, capacity, item, senders, receivers }) }
    }

    /// The records' numpy dtype (canonical).
    pub fn dtype(&self) -> &str {
        &self.core.item.0
    }

    /// Bytes of one record.
    pub fn item_size(&self) -> usize {
        self.core.item.1
    }

    /// A sender (see [`ShmQueue::sender`](super::ShmQueue::sender)).
    pub fn sender(&self) -> Result<DynSender> {
        DynSender::new(self.core.clone())
    }

    /// A receiver (see [`ShmQueue::receiver`](super::ShmQueue::receiver)).
    pub fn receiver(&self) -> Result<DynReceiver> {
        DynReceiver::new(self.core.clone())
    }

    /// Ends the stream (see [`ShmQueue::shutdown`](super::ShmQueue::shutdown)).
    pub fn shutdown(&self) {
        let _ = self.core.shutdown_with(Wait::Forever);
    }

    /// Like [`shutdown`](Self::shutdown), waiting at most `limit` for the
    /// internal lock; on [`Timeout`] the queue is left open.
    pub fn shutdown_timeout(&self, limit: Duration) -> Result<(), Timeout> {
        self.core.shutdown_with(Wait::within(limit))
    }

    /// True once shut down.
    pub fn is_shutdown(&self) -> bool {
        self.core.is_shutdown()
    }

    /// Records in the queue now.
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// True if no record is in the queue now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most records the queue holds.
    pub fn capacity(&self) -> u64 {
        self.core.capacity
    }
}

crate::segment::lifetime_api!(|s| &s.core.seg; impl[] DynQueue);
