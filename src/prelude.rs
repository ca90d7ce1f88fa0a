//! What most programs use, in one import: `use shmkit::prelude::*;`.

pub use crate::array::SharedArray;
pub use crate::pool::{Pool, Registry, TaskError};
pub use crate::{record, Error, FixedStr, Record};
