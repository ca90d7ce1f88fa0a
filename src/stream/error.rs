//! What each stream call can fail with: one type per call, each variant
//! possible for that call; a publish hands the loan back (`into_inner`).

use std::fmt;

/// Why [`Publisher::loan`](super::Publisher::loan) gave no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoanError {
    /// This publisher already has as many loans out as the stream can
    /// spare beside its subscribers' holds: publish or drop one first.
    #[error("this publisher has every spare slot on loan: publish or drop a loan first")]
    TooManyLoans,
    /// This publisher was inherited across `fork`: the stream is its parent's.
    #[error("this publisher was inherited across fork: publish from the process that made it")]
    Inherited,
}

/// Why [`Publisher::try_loan`](super::Publisher::try_loan) gave no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryLoanError {
    /// A `Block` stream's in-order subscribers have not read the slot that
    /// would be reused: `loan` waits for them (and drops a laggard).
    #[error("every free slot is still unread by an in-order subscriber")]
    Full,
    /// See [`LoanError::TooManyLoans`].
    #[error("this publisher has every spare slot on loan: publish or drop a loan first")]
    TooManyLoans,
    /// See [`LoanError::Inherited`].
    #[error("this publisher was inherited across fork: publish from the process that made it")]
    Inherited,
}

/// Why [`Publisher::loan_timeout`](super::Publisher::loan_timeout) gave no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoanTimeoutError {
    /// No slot was freed in time.
    #[error("no slot was freed in time")]
    Timeout,
    /// See [`LoanError::TooManyLoans`].
    #[error("this publisher has every spare slot on loan: publish or drop a loan first")]
    TooManyLoans,
    /// See [`LoanError::Inherited`].
    #[error("this publisher was inherited across fork: publish from the process that made it")]
    Inherited,
}

/// Why [`Publisher::publish`](super::Publisher::publish) refused a loan;
/// the loan is handed back.
#[derive(thiserror::Error)]
pub enum PublishError<L> {
    /// The loan is another publisher's.
    #[error("the loan is another publisher's: publish it with the publisher that lent it")]
    NotThisPublisher(L),
    /// This publisher was inherited across `fork`: the stream is its parent's.
    #[error("this publisher was inherited across fork: publish from the process that made it")]
    Inherited(L),
}

impl<L> PublishError<L> {
    /// The loan, back.
    pub fn into_inner(self) -> L {
        match self {
            PublishError::NotThisPublisher(l) | PublishError::Inherited(l) => l,
        }
    }
}

impl<L> fmt::Debug for PublishError<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::NotThisPublisher(_) => f.write_str("NotThisPublisher(..)"),
            PublishError::Inherited(_) => f.write_str("Inherited(..)"),
        }
    }
}

/// Why [`Subscriber::next`](super::Subscriber::next) or
/// [`latest`](super::Subscriber::latest) gave no sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The publisher ended the stream and this subscriber has read every
    /// sample published before: end of stream.
    #[error("the stream has ended and every sample was read")]
    Ended,
    /// The publisher's process died; every sample it published has been
    /// read. A publisher restarted under the name makes a new stream: open
    /// it again to follow.
    #[error("the stream's publisher died; open the stream again to follow a restarted publisher")]
    PublisherDied,
    /// A `Block` stream dropped this subscriber for holding its publisher
    /// back longer than the stream's lag limit. The next call goes on from
    /// the newest sample.
    #[error("this subscriber lagged past the stream's limit and was dropped; it goes on from the newest sample")]
    Dropped,
    /// This subscriber holds as many samples as the stream allows at once:
    /// drop one first.
    #[error("this subscriber holds every sample it may: drop one first")]
    TooManySamples,
    /// This subscriber was inherited across `fork`: open the stream by name here.
    #[error("this subscriber was inherited across fork: open the stream by name in this process")]
    Inherited,
}

/// Why [`Subscriber::try_next`](super::Subscriber::try_next) gave no sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// No new sample now.
    #[error("no new sample yet")]
    Empty,
    /// See [`RecvError::Ended`].
    #[error("the stream has ended and every sample was read")]
    Ended,
    /// See [`RecvError::PublisherDied`].
    #[error("the stream's publisher died; open the stream again to follow a restarted publisher")]
    PublisherDied,
    /// See [`RecvError::Dropped`].
    #[error("this subscriber lagged past the stream's limit and was dropped; it goes on from the newest sample")]
    Dropped,
    /// See [`RecvError::TooManySamples`].
    #[error("this subscriber holds every sample it may: drop one first")]
    TooManySamples,
    /// See [`RecvError::Inherited`].
    #[error("this subscriber was inherited across fork: open the stream by name in this process")]
    Inherited,
}

/// Why [`Subscriber::next_timeout`](super::Subscriber::next_timeout) gave no sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// No new sample in time.
    #[error("no new sample in time")]
    Timeout,
    /// See [`RecvError::Ended`].
    #[error("the stream has ended and every sample was read")]
    Ended,
    /// See [`RecvError::PublisherDied`].
    #[error("the stream's publisher died; open the stream again to follow a restarted publisher")]
    PublisherDied,
    /// See [`RecvError::Dropped`].
    #[error("this subscriber lagged past the stream's limit and was dropped; it goes on from the newest sample")]
    Dropped,
    /// See [`RecvError::TooManySamples`].
    #[error("this subscriber holds every sample it may: drop one first")]
    TooManySamples,
    /// See [`RecvError::Inherited`].
    #[error("this subscriber was inherited across fork: open the stream by name in this process")]
    Inherited,
}

/// Why a loan or a read stopped, before it is told as the call's own type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    Empty,
    Timeout,
    Full,
    TooManyLoans,
    Ended,
    PublisherDied,
    Dropped,
    TooManySamples,
    Inherited,
}

macro_rules! from_stop {
    ($ty:ident { $($stop:ident => $var:ident),* $(,)? }) => {
        impl From<Stop> for $ty {
            fn from(s: Stop) -> $ty {
                match s {
                    $(Stop::$stop => $ty::$var,)*
                    other => unreachable!("{other:?} is not a stop of this call"),
                }
            }
        }
    };
}

from_stop!(LoanError { TooManyLoans => TooManyLoans, Inherited => Inherited });
from_stop!(TryLoanError { Full => Full, TooManyLoans => TooManyLoans, Inherited => Inherited });
from_stop!(LoanTimeoutError { Timeout => Timeout, TooManyLoans => TooManyLoans, Inherited => Inherited });
from_stop!(RecvError {
    Ended => Ended, PublisherDied => PublisherDied, Dropped => Dropped, TooManySamples => TooManySamples,
    Inherited => Inherited,
});
from_stop!(TryRecvError {
    Empty => Empty, Ended => Ended, PublisherDied => PublisherDied, Dropped => Dropped,
    TooManySamples => TooManySamples, Inherited => Inherited,
});
from_stop!(RecvTimeoutError {
    Timeout => Timeout, Ended => Ended, PublisherDied => PublisherDied, Dropped => Dropped,
    TooManySamples => TooManySamples, Inherited => Inherited,
});
