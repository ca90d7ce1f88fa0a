//! How jobs and results travel: the pool's shared segment (per helper, a
//! status word, a skip table and two rings; the passes' claim tables),
//! frames and messages, task arguments and results as bytes, and the
//! spin-then-sleep waits.

pub(crate) mod claims;
pub(crate) mod codec;
pub(crate) mod region;
pub(crate) mod ring;
pub(crate) mod status;
pub(crate) mod wire;
