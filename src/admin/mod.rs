//! Finding, inspecting and removing segments by name: what `shmkit ls`,
//! `inspect`, `gc`, `rm` and `doctor` do, as library calls.
//!
//! ```
//! # let name = format!("shmkit-doc-admin-{}", std::process::id());
//! let a = shmkit::SharedArray::<i32, _>::create(&name, (4, 5))?;
//! let info = shmkit::admin::inspect(&name)?;
//! assert_eq!(info.array.unwrap().dtype, "<i4");
//! assert!(info.creator.unwrap().is_alive());
//! // What crashed runs of this program left, by its names' prefix:
//! let removed = shmkit::admin::Gc::new().prefix("doc-admin-").run()?;
//! assert!(removed.is_empty(), "a's creator, this process, is alive");
//! # Ok::<(), shmkit::Error>(())
//! ```

mod doctor;
mod gc;
mod inspect;

pub use crate::kind::SegmentKind;
pub use crate::segment::info::{ArrayHeader, CollectionInfo, Creator, SegmentInfo, StreamInfo};
pub use crate::segment::liveness::Presence;
pub use doctor::{doctor, Checkup, RemoveIpc};
pub use gc::{collect_garbage, list, list_unnamed, Gc, Listing, Unnamed};
pub use inspect::{inspect, remove, unlink};
