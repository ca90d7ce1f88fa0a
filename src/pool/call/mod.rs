//! The calls: building a pool, per-call settings and the operations
//! (`map`, `submit`, array passes), and a submitted task's handle.

pub(crate) mod batch;
pub(crate) mod builder;
mod claimed;
pub(crate) mod completions;
pub(crate) mod handle;
mod rows;
