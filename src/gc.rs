//! Finding and removing segments whose creator is gone.
//!
//! Every shmkit segment's trailer records its creator's pid and start
//! time, so a segment left by a killed process is recognised even after
//! the pid is reused. Segments shmkit did not create are never touched.

use crate::info::{inspect, unlink, ArrayInfo, Creator};
use crate::layout::{Trailer, TRAILER_LEN};
use crate::segment::Mapping;
use crate::{name, Error, Result};

/// Where POSIX shared memory lives.
const SHM_DIR: &str = "/dev/shm";

/// One entry of `/dev/shm`, as shmkit reads it.
#[derive(Debug)]
pub struct Listing {
    /// The entry's name.
    pub name: String,
    /// Its header, or why it could not be read (not an array, another
    /// user's, still being created, ...).
    pub info: Result<ArrayInfo>,
}

impl Listing {
    /// The creator shmkit recorded, if any: from the trailer, even for a
    /// segment whose creator died before finishing its header.
    pub fn creator(&self) -> Option<Creator> {
        match &self.info {
            Ok(info) => info.creator,
            Err(Error::NotReady { .. }) => unready_creator(&self.name),
            Err(_) => None,
        }
    }

    /// True for a shmkit segment whose creator has exited and that was
    /// not marked persistent: what [`collect_garbage`] removes.
    pub fn is_garbage(&self) -> bool {
        let persistent = self.info.as_ref().is_ok_and(|i| i.persistent);
        !persistent && self.creator().is_some_and(|c| !c.is_alive())
    }
}

/// Lists the entries of `/dev/shm` (sorted by name) with what their
/// headers say. Entries whose names shmkit would not accept are skipped.
pub fn list_segments() -> Result<Vec<Listing>> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| Error::from_io("read_dir", SHM_DIR, e))?;
    let mut out: Vec<Listing> = dir
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| name::validate(n).is_ok())
        .map(|name| Listing { info: inspect(&name), name })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes shmkit segments whose creator has exited, unless persistent;
/// returns their names. With `dry_run`, only says which it would remove.
///
/// Programs that want a clean slate call this at start; `shmkit gc` is
/// the same from the command line.
pub fn collect_garbage(dry_run: bool) -> Result<Vec<String>> {
    let garbage: Vec<String> = list_segments()?.into_iter().filter(Listing::is_garbage).map(|l| l.name).collect();
    if !dry_run {
        for name in &garbage {
            match unlink(name) {
                Ok(()) | Err(Error::NotFound { .. }) => {} // gone already: fine
                Err(e) => return Err(e),
            }
        }
    }
    Ok(garbage)
}

/// The creator in the trailer of a segment whose header was never
/// published (its creator died while creating it).
fn unready_creator(name: &str) -> Option<Creator> {
    let map = Mapping::open_shm(name).ok()?;
    let bytes = map.read(map.len().checked_sub(TRAILER_LEN)?, TRAILER_LEN);
    let t = Trailer::decode(bytes.as_slice().try_into().ok()?)?;
    Some(Creator { pid: t.pid, start_time: t.start_time })
}
