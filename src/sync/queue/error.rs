//! What each queue call can fail with: one type per call, each variant
//! possible for that call, and the record handed back where one was given
//! (`into_inner`), as crossbeam-channel does.

/// Why [`Sender::send`](super::Sender::send) did not send; hands the record back.
#[derive(Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError<T> {
    /// The queue was shut down ([`ShmQueue::shutdown`](super::ShmQueue::shutdown)):
    /// no more records are taken.
    #[error("the queue is shut down: no more records are taken")]
    Shutdown(T),
    /// Every receiver is gone (dropped, or its process died) and none is
    /// left to take the record, as writing to a pipe whose reader is gone.
    #[error("every receiver of the queue is gone (dropped or died): nothing would take the record")]
    Disconnected(T),
    /// The queue's lock was overwritten by another process; the queue
    /// can no longer be used safely.
    #[error("the queue's lock is corrupted; make a new queue")]
    Broken(T),
    /// This handle was inherited across `fork`: the role is the parent's.
    /// Open the queue by name in this process and take a sender there.
    #[error("this sender was inherited across fork: open the queue by name in this process")]
    Inherited(T),
}

/// Why [`Sender::try_send`](super::Sender::try_send) did not send; hands the record back.
#[derive(Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<T> {
    /// The queue is full now.
    #[error("the queue is full")]
    Full(T),
    /// The queue's internal lock stayed held for over a millisecond (its
    /// critical sections take well under a microsecond): its holder is
    /// stopped or starved. `send_timeout` waits longer.
    #[error("the queue's lock is held by a stopped or starved process; try again, or use send_timeout")]
    Stalled(T),
    /// See [`SendError::Shutdown`].
    #[error("the queue is shut down: no more records are taken")]
    Shutdown(T),
    /// See [`SendError::Disconnected`].
    #[error("every receiver of the queue is gone (dropped or died): nothing would take the record")]
    Disconnected(T),
    /// See [`SendError::Broken`].
    #[error("the queue's lock is corrupted; make a new queue")]
    Broken(T),
    /// This handle was inherited across `fork`: the role is the parent's.
    /// Open the queue by name in this process and take a sender there.
    #[error("this sender was inherited across fork: open the queue by name in this process")]
    Inherited(T),
}

/// Why [`Sender::send_timeout`](super::Sender::send_timeout) did not send;
/// hands the record back.
#[derive(Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendTimeoutError<T> {
    /// No room (or the lock) in time.
    #[error("no room in the queue in time")]
    Timeout(T),
    /// See [`SendError::Shutdown`].
    #[error("the queue is shut down: no more records are taken")]
    Shutdown(T),
    /// See [`SendError::Disconnected`].
    #[error("every receiver of the queue is gone (dropped or died): nothing would take the record")]
    Disconnected(T),
    /// See [`SendError::Broken`].
    #[error("the queue's lock is corrupted; make a new queue")]
    Broken(T),
    /// This handle was inherited across `fork`: the role is the parent's.
    /// Open the queue by name in this process and take a sender there.
    #[error("this sender was inherited across fork: open the queue by name in this process")]
    Inherited(T),
}

/// Why [`Receiver::recv`](super::Receiver::recv) returned no record: the
/// stream has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The queue was shut down and every record in it taken: end of stream.
    #[error("the queue is shut down and drained: end of stream")]
    Shutdown,
    /// Every sender is gone (dropped, or its process died) and every
    /// record taken, as reading a pipe whose writer is gone.
    #[error("every sender of the queue is gone (dropped or died) and it is drained: end of stream")]
    Disconnected,
    /// The queue's lock was overwritten by another process.
    #[error("the queue's lock is corrupted; make a new queue")]
    Broken,
    /// This handle was inherited across `fork`: the role is the parent's.
    /// Open the queue by name in this process and take a receiver there.
    #[error("this receiver was inherited across fork: open the queue by name in this process")]
    Inherited,
}

/// Why [`Receiver::try_recv`](super::Receiver::try_recv) returned no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing to take now.
    #[error("the queue is empty")]
    Empty,
    /// See [`TrySendError::Stalled`].
    #[error("the queue's lock is held by a stopped or starved process; try again, or use recv_timeout")]
    Stalled,
    /// See [`RecvError::Shutdown`].
    #[error("the queue is shut down and drained: end of stream")]
    Shutdown,
    /// See [`RecvError::Disconnected`].
    #[error("every sender of the queue is gone (dropped or died) and it is drained: end of stream")]
    Disconnected,
    /// See [`RecvError::Broken`].
    #[error("the queue's lock is corrupted; make a new queue")]
    Broken,
    /// This handle was inherited across `fork`: the role is the parent's.
    /// Open the queue by name in this process and take a receiver there.
    #[error("this receiver was inherited across fork: open the queue by name in this process")]
    Inherited,
}

/// Why [`Receiver::recv_timeout`](super::Receiver::recv_timeout) returned no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// Nothing arrived in time.
    #[error("nothing arrived in time")]
    Timeout,
    /// See [`RecvError::Shutdown`].
    #[error("the queue is shut down and drained: end of stream")]
    Shutdown,
    /// See [`RecvError::Disconnected`].
    #[error("every sender of the queue is gone (dropped or died) and it is drained: end of stream")]
    Disconnected,
    /// See [`RecvError::Broken`].
    #[error("the queue's lock is corrupted; make a new queue")]
    Broken,
    /// This handle was inherited across `fork`: the role is the parent's.
    /// Open the queue by name in this process and take a receiver there.
    #[error("this receiver was inherited across fork: open the queue by name in this process")]
    Inherited,
}

macro_rules! hands_back {
    ($($ty:ident { $($v:ident),* }),*) => {$(
        impl<T> $ty<T> {
            /// The record that was not sent.
            pub fn into_inner(self) -> T {
                match self { $($ty::$v(t))|* => t }
            }
        }

        impl<T> std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $($ty::$v(_) => concat!(stringify!($v), "(..)")),* })
            }
        }
    )*};
}

hands_back!(
    SendError { Shutdown, Disconnected, Broken, Inherited },
    TrySendError { Full, Stalled, Shutdown, Disconnected, Broken, Inherited },
    SendTimeoutError { Timeout, Shutdown, Disconnected, Broken, Inherited }
);
