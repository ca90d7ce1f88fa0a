//! Streams of n-d arrays between independent programs: a publisher writes
//! each sample in place in a shared slot and publishes it; subscribers read
//! it where it is, zero-copy, every sample in order or only the newest.
//!
//! A stream is one segment: a `.npy` array of `slots` samples (numpy maps
//! it, slots first: `numpy.load('/dev/shm/NAME', mmap_mode='r')`), then a
//! control block. Programs start in any order
//! ([`Subscriber::open_timeout`] waits for the stream) and come and go:
//!
//! - **Policies.** What a lagging in-order subscriber does to the publisher
//!   is chosen at create: [`Policy::Block`] (the publisher waits for it,
//!   up to a lag limit, then drops it and tells it so) or
//!   [`Policy::Overwrite`] (the oldest unread sample is reused, and the
//!   subscriber's next sample says how many it missed). A recorder that
//!   needs every frame beside a viewer that wants the newest works on one
//!   stream: the viewer's [`latest`](Subscriber::latest) holds nothing back.
//! - **Faults.** A subscriber killed while holding samples gives its place
//!   and its samples back (they are held through locks the kernel drops
//!   with the process). A publisher killed while writing never shows the
//!   half-written sample: subscribers read what was published, then hear
//!   [`RecvError::PublisherDied`]. A publisher started again under the name
//!   of a dead one replaces its stream, numbering on. A stopped subscriber
//!   never stalls an `Overwrite` publisher, nor a `Block` one past its
//!   lag limit. `shmkit gc` collects what a dead publisher left.
//! - **One publisher** per stream: a second one is refused
//!   ([`Error::TooManyHandles`](crate::Error::TooManyHandles)).
//!
//! ```
//! use shmkit::stream::{Policy, Publisher, Subscriber};
//! # let name = format!("shmkit-doc-streams-{}", std::process::id());
//! let camera = Publisher::<u8, _>::create(&name, (48, 64, 3), 8, Policy::Overwrite)?;
//! let viewer = Subscriber::<u8, ndarray::Ix3>::open(&name)?;
//! for shade in 0..3u8 {
//!     let mut frame = camera.loan()?;
//!     frame.fill(shade);
//!     camera.publish(frame).unwrap();
//! }
//! let newest = viewer.latest()?;
//! assert_eq!((newest.seq(), newest[[0, 0, 0]]), (3, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod control;
mod dyn_publisher;
mod dyn_subscriber;
mod error;
mod publisher;
mod subscriber;

pub(crate) use control::summary;
pub use control::{Policy, MAX_HOLDS, MAX_SLOTS, MAX_SUBSCRIBERS};
pub use dyn_publisher::DynPublisher;
pub use dyn_subscriber::{DynSubscriber, Taken};
pub use error::{LoanError, LoanTimeoutError, PublishError, RecvError, RecvTimeoutError, TryLoanError, TryRecvError};
pub use publisher::{Loan, Publisher, PublisherBuilder};
pub use subscriber::{Sample, Subscriber};
