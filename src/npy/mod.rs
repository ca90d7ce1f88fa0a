//! numpy compatibility: the `.npy` header, the Python-literal reader under
//! it, element types and their dtype strings, and the dtypes of records
//! (what locks, queues, maps and lists hold), so that what Rust writes
//! numpy reads and the other way round.

pub(crate) mod descr;
pub(crate) mod dtype;
pub(crate) mod header;
pub(crate) mod literal;
pub(crate) mod record;
