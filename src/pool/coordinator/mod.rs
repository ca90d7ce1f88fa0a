//! The coordinator's side: the shared job queue, one driver thread per
//! helper, jobs and where their results go, cancellation, and the helper
//! as those who may stop it see it.

pub(crate) mod cancel;
pub(crate) mod cell;
pub(crate) mod driver;
pub(crate) mod job;
pub(crate) mod lane;
pub(crate) mod shared;
pub(crate) mod slot;
