//! `Mapping`: the one inner mapping type under every segment, with its
//! fd, its identity (device and inode), and who may remove its name.
//!
//! Everything here checks bounds against the mapping's length, which is
//! fixed for the mapping's life.

use std::io;
use std::mem::ManuallyDrop;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use memmap2::{MmapOptions, MmapRaw};
use rustix::fd::{AsFd, BorrowedFd};

use super::inherit::Tracked;
use crate::os::{self, FileId};
use crate::{Error, Result};

/// What backs a mapping, and whether dropping it removes the name.
#[derive(Debug)]
pub(crate) enum Backing {
    /// A `/dev/shm` segment; an `owner` removes its name on drop.
    Shm { name: String, owner: AtomicBool },
    /// A file on disk; never removed by shmkit.
    File { path: PathBuf },
}

impl Backing {
    /// The segment name or file path, for messages.
    pub fn label(&self) -> &str {
        match self {
            Backing::Shm { name, .. } => name,
            Backing::File { path } => path.to_str().unwrap_or("<non-UTF-8 path>"),
        }
    }
}

/// A read-write shared mapping of a whole segment or file.
///
/// `MmapRaw` rather than `MmapMut`: other processes write this memory at
/// any time, so handing out a `&mut [u8]` to all of it would promise an
/// exclusivity no one can keep. Typed views are built on top, with their
/// own rules (see `SharedArray`).
#[derive(Debug)]
pub(crate) struct Mapping {
    map: ManuallyDrop<MmapRaw>,
    backing: Backing,
    /// Kept open: it holds this handle's locks, and tells whether the
    /// name still leads here. Not shared with forked children (`inherit`).
    fd: Tracked,
    id: FileId,
    /// Lock guards alive on this mapping. Memory of a locked robust mutex
    /// is on its holder thread's robust list, which glibc and the kernel
    /// follow; a guard that was forgotten (`mem::forget`) leaves it there
    /// for good, so then the mapping is never unmapped.
    pins: AtomicUsize,
    /// The process that made this handle. A child forked from it inherits
    /// the handle, and a copy of `fd` pointed at `/dev/null` (see
    /// `inherit`): only the maker may remove the name, claim bytes or take
    /// slots through it.
    maker: u32,
}

impl Mapping {
    /// Maps `len` bytes of `fd`'s file read-write; `fd` stays the handle's,
    /// for its locks.
    ///
    /// The mapping is made through a second open file (`os::reopen`),
    /// closed at once: a mapping keeps its open file, and a forked child's
    /// copy of the mapping would keep that file's locks alive after their
    /// holder died (see `inherit`). The locks live on `fd` alone, which a
    /// child does not keep. (Without `/proc`, the mapping is made through
    /// `fd` itself.)
    pub fn new(fd: Tracked, len: usize, backing: Backing) -> Result<Mapping> {
        let id = os::stat(&*fd).map_err(|e| Error::from_io("fstat", backing.label(), e))?.id;
        // The same file, checked: an unusual /proc could hand back another.
        let other = os::reopen(&*fd).ok().filter(|o| os::stat(o).is_ok_and(|s| s.id == id));
        let map = match &other {
            Some(other) => MmapOptions::new().len(len).map_raw(&other.as_fd()),
            None => MmapOptions::new().len(len).map_raw(&fd.as_fd()),
        };
        let map = map.map_err(|e| Error::from_io("mmap", backing.label(), e))?;
        Ok(Mapping {
            map: ManuallyDrop::new(map),
            backing,
            fd,
            id,
            pins: AtomicUsize::new(0),
            maker: os::current_pid(),
        })
    }

    /// Faults every page in now, in bulk (`madvise(MADV_POPULATE_WRITE)`,
    /// or `_READ` when `write` is false). Best effort: kernels before 5.14
    /// lack it, and then pages fault in on first use as usual.
    pub fn populate(&self, write: bool) {
        let advice = if write { memmap2::Advice::PopulateWrite } else { memmap2::Advice::PopulateRead };
        let _ = self.map.advise(advice);
    }

    /// [`populate`](Self::populate) for bytes `offset..offset + len` only
    /// (widened to whole pages).
    pub fn populate_range(&self, offset: usize, len: usize, write: bool) {
        let advice = if write { memmap2::Advice::PopulateWrite } else { memmap2::Advice::PopulateRead };
        let end = offset.saturating_add(len).min(self.len());
        if offset < end {
            let _ = self.map.advise_range(advice, offset, end - offset);
        }
    }

    /// Maps bytes `offset..offset + len` (widened to whole pages) for
    /// writing now, allocating every page not yet allocated
    /// (`madvise(MADV_POPULATE_WRITE)`, see `madvise(2)`): `EINVAL` before
    /// Linux 5.14, `EFAULT` for a page the filesystem had no room for.
    pub fn populate_write_range(&self, offset: usize, len: usize) -> std::io::Result<()> {
        self.map.advise_range(memmap2::Advice::PopulateWrite, offset, len)
    }

    /// The segment's or file's identity, which a name may stop leading to.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// The process that made this handle (see the field).
    pub fn maker(&self) -> u32 {
        self.maker
    }

    /// True in the process that made this handle; false in a forked child.
    pub fn is_maker(&self) -> bool {
        self.maker == os::current_pid()
    }

    /// The open file behind the mapping.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// True once the segment or file has no name left (`st_nlink == 0`);
    /// always false in a forked child, whose descriptor is `/dev/null`.
    pub fn is_unlinked(&self) -> bool {
        os::stat(&self.fd).is_ok_and(|s| s.links == 0)
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The first byte of the mapping (page-aligned).
    pub fn ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// What backs this mapping.
    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// Replaces the open file behind the mapping by `fd`, which must be the
    /// same file (the mapping does not change).
    pub fn replace_fd(&mut self, fd: Tracked) {
        debug_assert_eq!(os::stat(&*fd).map(|s| s.id).ok(), Some(self.id));
        self.fd = fd;
    }

    /// Gives the mapping the right to remove its name on drop.
    pub fn own(&self) {
        if let Backing::Shm { owner, .. } = &self.backing {
            owner.store(true, Ordering::SeqCst);
        }
    }

    /// Gives up the right to remove the name on drop.
    pub fn disown(&self) {
        if let Backing::Shm { owner, .. } = &self.backing {
            owner.store(false, Ordering::SeqCst);
        }
    }

    /// True if this mapping removes its name on drop.
    pub fn is_owner(&self) -> bool {
        matches!(&self.backing, Backing::Shm { owner, .. } if owner.load(Ordering::SeqCst))
    }

    /// Counts a lock guard that points into this mapping.
    pub fn pin(&self) {
        self.pins.fetch_add(1, Ordering::AcqRel);
    }

    /// Uncounts a lock guard, once it no longer points into the mapping.
    pub fn unpin(&self) {
        self.pins.fetch_sub(1, Ordering::AcqRel);
    }

    /// Copies `bytes` into the mapping at `offset`.
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        let end = offset.checked_add(bytes.len()).filter(|&e| e <= self.len());
        assert!(end.is_some(), "write of {} bytes at {offset} past mapping of {}", bytes.len(), self.len());
        // SAFETY: offset + bytes.len() <= self.len() was checked above, so the
        // destination lies inside the live, writable mapping.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr().add(offset), bytes.len()) };
    }

    /// The byte at `offset`, viewed as an atomic shared with other processes.
    pub fn atomic_u8(&self, offset: usize) -> &AtomicU8 {
        assert!(offset < self.len(), "atomic byte at {offset} past mapping of {}", self.len());
        // SAFETY: offset < self.len() was checked above; any address is aligned
        // for AtomicU8; the mapping lives as long as the returned borrow of self.
        unsafe { AtomicU8::from_ptr(self.ptr().add(offset)) }
    }

    /// The 4 bytes at `offset`, viewed as an atomic shared with other processes.
    pub fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        assert!(offset % 4 == 0 && offset.checked_add(4).is_some_and(|e| e <= self.len()), "u32 at {offset}");
        // SAFETY: the check above keeps the 4 bytes inside the mapping and at an
        // offset divisible by 4 from its page-aligned start, hence aligned.
        unsafe { AtomicU32::from_ptr(self.ptr().add(offset).cast()) }
    }

    /// The 8 bytes at `offset`, viewed as an atomic shared with other processes.
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset.checked_add(8).is_some_and(|e| e <= self.len()), "u64 at {offset}");
        // SAFETY: the check above keeps the 8 bytes inside the mapping and at an
        // offset divisible by 8 from its page-aligned start, hence aligned.
        unsafe { AtomicU64::from_ptr(self.ptr().add(offset).cast()) }
    }

    /// The `n` 8-byte words at `offset`, viewed as atomics shared with other
    /// processes.
    pub fn atomic_u64s(&self, offset: usize, n: usize) -> &[AtomicU64] {
        let end = n.checked_mul(8).and_then(|b| offset.checked_add(b));
        assert!(offset % 8 == 0 && end.is_some_and(|e| e <= self.len()), "{n} u64 at {offset}");
        // SAFETY: the check above keeps the 8n bytes inside the mapping and at an
        // offset divisible by 8 from its page-aligned start, hence aligned;
        // AtomicU64 has the size and alignment of u64, and every access to
        // these words goes through the atomics; the slice borrows self, so the
        // mapping outlives it.
        unsafe { std::slice::from_raw_parts(self.ptr().add(offset).cast::<AtomicU64>(), n) }
    }

    /// Writes dirty pages of a file-backed mapping to disk: `msync(2)`.
    pub fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }

    /// Removes the segment's name now, if it still leads to this segment
    /// (an owner's right); files are never removed.
    pub fn unlink(&self) -> Result<()> {
        let Backing::Shm { name, owner } = &self.backing else { return Ok(()) };
        if !self.is_maker() {
            return Err(Error::Inherited { name: name.clone(), maker: self.maker });
        }
        owner.store(false, Ordering::SeqCst);
        remove_named(name, self.id)
    }
}

/// Removes `/dev/shm` entry `name` if it still leads to segment `id`:
/// `NotFound` if the name is gone, `Replaced` if it leads elsewhere.
pub(crate) fn remove_named(name: &str, id: FileId) -> Result<()> {
    let dir = os::shm_dir().map_err(Error::shm_dir)?;
    match os::remove_if(dir, name, id).map_err(|e| Error::from_io("unlink", name, e))? {
        os::Removed::Yes => Ok(()),
        os::Removed::Gone => Err(Error::NotFound { name: name.to_owned() }),
        os::Removed::Other => Err(Error::Replaced { name: name.to_owned() }),
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // A forked child dropping an inherited owner handle leaves the name
        // to the process that made it.
        if let (Backing::Shm { name, .. }, true, true) = (&self.backing, self.is_owner(), self.is_maker()) {
            // Errors are ignored: drop cannot report them, and the likely ones
            // (someone removed the name, or gave it to another segment) leave
            // nothing of ours to clean. `close()` reports them instead.
            if let Ok(dir) = os::shm_dir() {
                let _ = os::remove_if(dir, name, self.id);
            }
        }
        if *self.pins.get_mut() == 0 {
            // SAFETY: the map is dropped exactly once, here, and not used after.
            unsafe { ManuallyDrop::drop(&mut self.map) };
        }
        // Else a forgotten guard's lock is still on a thread's robust list,
        // which the kernel and glibc write through: leak the mapping rather
        // than let them write into whatever is mapped there next.
    }
}
