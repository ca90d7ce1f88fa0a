//! Starting a helper: `posix_spawn` with one inherited socket, and the
//! handshake over it.

pub(crate) mod process;
pub(crate) mod relay;
pub(crate) mod spawn;
