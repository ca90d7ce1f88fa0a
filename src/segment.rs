//! A mapped region: a named shared-memory segment or a file, and who may
//! remove it.
//!
//! This module and [`crate::array`] are the only places that touch raw
//! pointers into a mapping. Everything here checks bounds against the
//! mapping's length, which is fixed for the mapping's life.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

use memmap2::{MmapOptions, MmapRaw};
use rustix::fd::{AsFd, OwnedFd};

use crate::os::{self, Errno};
use crate::{Error, Result};

/// What backs a mapping, and whether dropping it removes the name.
#[derive(Debug)]
pub(crate) enum Backing {
    /// A `/dev/shm` segment; `owner` handles unlink it on drop.
    Shm { name: String, owner: bool },
    /// A file on disk; never removed by shmkit.
    File { path: PathBuf },
}

/// A read-write shared mapping of a whole segment or file.
///
/// `MmapRaw` rather than `MmapMut`: other processes write this memory at
/// any time, so handing out a `&mut [u8]` to all of it would promise an
/// exclusivity no one can keep. Views are built on demand instead.
#[derive(Debug)]
pub(crate) struct Mapping {
    map: MmapRaw,
    backing: Backing,
    /// Kept open to tell later whether the name still leads here.
    fd: OwnedFd,
    inode: u64,
}

impl Mapping {
    /// Creates segment `name` of `len` bytes; pages reserved if `reserve`.
    pub fn create_shm(name: &str, len: usize, reserve: bool) -> Result<Mapping> {
        let fd = os::shm_create(name).map_err(|e| Error::from_io("shm_open", name, e))?;
        // From here the name exists: the guard unlinks it on any error below.
        let mapping = Mapping::sized(fd, len, reserve, Backing::Shm { name: name.to_owned(), owner: true });
        if let (Ok(m), true) = (&mapping, reserve) {
            // Fault every page in now, in bulk: first-touch faults one page
            // at a time cost 1.9 s per GiB on the development VM, this 0.36 s.
            m.populate();
        }
        if mapping.is_err() {
            let _ = os::shm_unlink(name);
        }
        mapping
    }

    /// Maps existing segment `name`, without the right to unlink it.
    pub fn open_shm(name: &str) -> Result<Mapping> {
        let fd = os::shm_open(name).map_err(|e| Error::from_io("shm_open", name, e))?;
        Mapping::existing(fd, Backing::Shm { name: name.to_owned(), owner: false })
    }

    /// Creates file `path` (which must not exist) of `len` bytes.
    ///
    /// Never truncates an existing file: another process may have it
    /// mapped, and truncation would crash it with SIGBUS.
    pub fn create_file(path: &Path, len: usize) -> Result<Mapping> {
        let label = path.display().to_string();
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create_new(true).mode(0o644);
        let file = opts.open(path).map_err(|e| Error::from_io("create", &label, e))?;
        let mapping = Mapping::sized(file.into(), len, true, Backing::File { path: path.to_owned() });
        if mapping.is_err() {
            let _ = std::fs::remove_file(path);
        }
        mapping
    }

    /// Maps existing file `path` read-write.
    pub fn open_file(path: &Path) -> Result<Mapping> {
        let label = path.display().to_string();
        let file = OpenOptions::new().read(true).write(true).open(path);
        let file: File = file.map_err(|e| Error::from_io("open", &label, e))?;
        Mapping::existing(file.into(), Backing::File { path: path.to_owned() })
    }

    fn sized(fd: OwnedFd, len: usize, reserve: bool, backing: Backing) -> Result<Mapping> {
        let label = backing.label().to_owned();
        let sized = match reserve {
            true => os::reserve(&fd, len as u64).or_else(|e| match e {
                // Filesystems without fallocate: size it, pages on demand.
                Errno::OPNOTSUPP => os::set_len(&fd, len as u64),
                _ => Err(e),
            }),
            false => os::set_len(&fd, len as u64),
        };
        sized.map_err(|e| match e {
            Errno::NOSPC | Errno::FBIG => {
                Error::NoSpace { name: label.clone(), requested: len as u64, available: os::free_bytes(&fd) }
            }
            _ => Error::from_io("fallocate", &label, e.into()),
        })?;
        Mapping::map(fd, len, backing)
    }

    fn existing(fd: OwnedFd, backing: Backing) -> Result<Mapping> {
        let len = os::len_of(&fd).map_err(|e| Error::from_io("fstat", backing.label(), e))?;
        let len = usize::try_from(len).ok().filter(|&l| l <= isize::MAX as usize);
        let len = len.ok_or_else(|| Error::bad_header(backing.label(), "length exceeds the address space"))?;
        if len < 10 {
            return Err(Error::TooSmall { name: backing.label().to_owned(), len: len as u64, needed: 10 });
        }
        Mapping::map(fd, len, backing)
    }

    fn map(fd: OwnedFd, len: usize, backing: Backing) -> Result<Mapping> {
        let map = MmapOptions::new().len(len).map_raw(&fd.as_fd());
        let map = map.map_err(|e| Error::from_io("mmap", backing.label(), e))?;
        let inode = os::inode_of(&fd).map_err(|e| Error::from_io("fstat", backing.label(), e))?;
        Ok(Mapping { map, backing, fd, inode })
    }

    /// Faults every page in now, in bulk. Best effort: kernels before
    /// 5.14 lack the call, and then pages fault in on first use as usual.
    pub fn populate(&self) {
        let _ = self.map.advise(memmap2::Advice::PopulateWrite);
    }

    /// The inode behind the mapping: which segment, even after renames.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// True once the segment or file has no name left (`st_nlink == 0`).
    pub fn is_unlinked(&self) -> bool {
        os::link_count(&self.fd).is_ok_and(|n| n == 0)
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

    /// Copies `len` bytes at `offset` out of the mapping.
    ///
    /// A copy, so that parsing sees one consistent snapshot even if another
    /// process writes the segment meanwhile.
    pub fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        let end = offset.checked_add(len).filter(|&e| e <= self.len());
        assert!(end.is_some(), "read of {len} bytes at {offset} past mapping of {}", self.len());
        let mut out = vec![0u8; len];
        // SAFETY: offset + len <= self.len() was checked above, so the source
        // lies inside the live mapping; `out` is a fresh buffer of `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr().add(offset), out.as_mut_ptr(), len) };
        out
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
        assert!(offset % 4 == 0 && offset + 4 <= self.len(), "atomic u32 at {offset} misplaced");
        // SAFETY: the check above keeps the 4 bytes inside the mapping and at an
        // offset divisible by 4 from its page-aligned start, hence aligned.
        unsafe { AtomicU32::from_ptr(self.ptr().add(offset).cast()) }
    }

    /// The 8 bytes at `offset`, viewed as an atomic shared with other processes.
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= self.len(), "atomic u64 at {offset} misplaced");
        // SAFETY: the check above keeps the 8 bytes inside the mapping and at an
        // offset divisible by 8 from its page-aligned start, hence aligned.
        unsafe { AtomicU64::from_ptr(self.ptr().add(offset).cast()) }
    }

    /// Writes dirty pages of a file-backed mapping to disk: `msync(2)`.
    pub fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }

    /// Removes the segment's name now (an owner's right); no-op for files.
    pub fn unlink(&mut self) -> Result<()> {
        match &mut self.backing {
            Backing::Shm { name, owner } => {
                *owner = false;
                os::shm_unlink(name).map_err(|e| Error::from_io("shm_unlink", name, e))
            }
            Backing::File { .. } => Ok(()),
        }
    }

    /// Gives up the right to unlink on drop.
    pub fn disown(&mut self) {
        if let Backing::Shm { owner, .. } = &mut self.backing {
            *owner = false;
        }
    }
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

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Backing::Shm { name, owner: true } = &self.backing {
            // Errors are ignored: drop cannot report them, and the only likely
            // one (ENOENT: someone already removed the name) leaves nothing to
            // clean. `SharedArray::close` reports them instead.
            let _ = os::shm_unlink(name);
        }
        // The MmapRaw field unmaps after this.
    }
}
