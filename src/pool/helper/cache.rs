//! Arrays a helper keeps mapped between tasks.
//!
//! Attaching costs a page-table fill per task otherwise (35–50 ms per GiB
//! here), so a helper maps each array once. Entries are keyed by device
//! and inode, not name: a name unlinked and created again is a different
//! array, and every tmpfs mount numbers its inodes on its own. An
//! entry whose segment has been unlinked is dropped at the next lookup,
//! or by an idle helper within 100 ms, so helpers do not keep freed
//! memory alive (and a pass refuses an array whose name is gone: helpers
//! find arrays by name).
//!
//! A cached array's pages are mapped ahead of use in 2 MiB blocks
//! (`MADV_POPULATE_*`, one call per run of blocks), those of each chunk's
//! rows before the task sees them: passes over a mapping filled this way
//! ran ~10% faster on the development VM than over one filled by page
//! faults (0.87x in-process threads to parity). Only the chunk's blocks:
//! a helper that populated the whole array on first use (0.2 s per GiB)
//! made every helper pay for all of it on a pass over a fresh array,
//! where each block is now mapped by the helper that works on it.

use std::any::{Any, TypeId};

use ndarray::Dimension;

use crate::os::FileId;
use crate::pool::transport::wire::ChunkArgs;
use crate::{Element, Error, SharedArray};

/// Most arrays kept mapped at once; the oldest goes first.
const CAPACITY: usize = 16;
/// Pages are mapped ahead of use this many bytes at a time.
const BLOCK: usize = 2 << 20;

trait Cached: Send {
    fn unlinked(&self) -> bool;
    fn as_any(&mut self) -> &mut dyn Any;
}

impl<T: Element, D: Dimension + 'static> Cached for SharedArray<T, D> {
    fn unlinked(&self) -> bool {
        self.is_unlinked()
    }
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

struct Entry {
    id: FileId,
    kind: TypeId,
    array: Box<dyn Cached>,
    /// Which `BLOCK`s of the elements are mapped already.
    mapped: Vec<bool>,
}

/// A helper's mapped arrays.
#[derive(Default)]
pub struct Cache {
    entries: Vec<Entry>,
}

impl Cache {
    /// The array `args` names, mapped once and reused.
    pub fn array<T: Element, D: Dimension + 'static>(
        &mut self,
        args: &ChunkArgs,
    ) -> Result<&mut SharedArray<T, D>, Error> {
        let kind = TypeId::of::<SharedArray<T, D>>();
        let id = FileId { dev: args.dev, ino: args.ino };
        self.entries.retain(|e| e.id == id || !e.array.unlinked());
        let found = self.entries.iter().position(|e| e.id == id && e.kind == kind);
        let at = match found {
            Some(at) => at,
            None => self.insert(id, kind, Box::new(open::<T, D>(args)?)),
        };
        let Entry { array, mapped, .. } = &mut self.entries[at];
        let array: &mut SharedArray<T, D> = array.as_any().downcast_mut().expect("entry kind matches its TypeId");
        map_ahead(array, mapped, args);
        Ok(array)
    }

    /// True if no array is mapped.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Unmaps the arrays whose segment has been removed.
    pub fn prune(&mut self) {
        self.entries.retain(|e| !e.array.unlinked());
    }

    fn insert(&mut self, id: FileId, kind: TypeId, array: Box<dyn Cached>) -> usize {
        if self.entries.len() == CAPACITY {
            self.entries.remove(0);
        }
        self.entries.push(Entry { id, kind, array, mapped: Vec::new() });
        self.entries.len() - 1
    }
}

/// Maps the pages of the rows `args` names that are not mapped yet, a
/// run of blocks per call. Rows out of range map nothing here: the task
/// reports them.
fn map_ahead<T: Element, D: Dimension>(array: &SharedArray<T, D>, mapped: &mut Vec<bool>, args: &ChunkArgs) {
    let bytes = array.len() * size_of::<T>();
    let rows = array.shape().first().copied().unwrap_or(0).max(1);
    let row = bytes / rows;
    let (from, to) = (args.start.saturating_mul(row).min(bytes), args.end.saturating_mul(row).min(bytes));
    if mapped.len() != bytes.div_ceil(BLOCK) {
        *mapped = vec![false; bytes.div_ceil(BLOCK)];
    }
    let blocks = from / BLOCK..to.div_ceil(BLOCK);
    let mut k = blocks.start;
    while k < blocks.end {
        if mapped[k] {
            k += 1;
            continue;
        }
        let run = (k..blocks.end).take_while(|&j| !mapped[j]).count();
        array.populate_bytes(k * BLOCK, run * BLOCK);
        mapped[k..k + run].iter_mut().for_each(|m| *m = true);
        k += run;
    }
}

fn open<T: Element, D: Dimension>(args: &ChunkArgs) -> Result<SharedArray<T, D>, Error> {
    let array = match args.file {
        true => SharedArray::open_file(&args.location)?,
        false => SharedArray::open(&args.location)?,
    };
    if array.id() != (FileId { dev: args.dev, ino: args.ino }) {
        return Err(Error::Replaced { name: args.location.clone() });
    }
    Ok(array)
}
