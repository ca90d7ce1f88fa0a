//! Arrays a helper keeps mapped between tasks.
//!
//! Attaching costs a page-table fill per task otherwise (35–50 ms per GiB
//! here), so a helper maps each array once. Entries are keyed by device
//! and inode, not name: a name unlinked and created again is a different
//! array, and every tmpfs mount numbers its inodes on its own. An
//! entry whose segment has been unlinked is dropped at the next lookup,
//! or by an idle helper soon (100 ms after its last task, then at
//! doubling intervals up to 3.2 s), so helpers do not keep freed
//! memory alive (and a pass refuses an array whose name is gone: helpers
//! find arrays by name).
//!
//! A newly cached array is populated (every page mapped in one call): it
//! costs about 0.2 s per GiB once, and later passes ran ~10% faster on the
//! development VM than over a mapping filled by page faults, which took
//! the doubling from 0.87x to parity with in-process threads.

use std::any::{Any, TypeId};

use ndarray::Dimension;

use crate::os::FileId;
use crate::pool::transport::wire::ChunkArgs;
use crate::{Element, Error, SharedArray};

/// Most arrays kept mapped at once; the oldest goes first.
const CAPACITY: usize = 16;

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
        let any = self.entries[at].array.as_any();
        Ok(any.downcast_mut().expect("entry kind matches its TypeId"))
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
        self.entries.push(Entry { id, kind, array });
        self.entries.len() - 1
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
    array.populate();
    Ok(array)
}
