//! `Segment`: a named shared-memory segment (or a `.npy` file) of any
//! kind, validated, with its lifetime rules. Arrays and every sync
//! primitive are thin typed views over one.
//!
//! Crate-internal on purpose: its byte and atomic accessors hand out
//! pointers into memory other processes write, which only the typed
//! views above it know how to use soundly.
//!
//! **Creating** is crash-safe: the segment is built as an unnamed file
//! (`O_TMPFILE`) in `/dev/shm`, its creator's liveness lock taken, pages
//! reserved and populated, header, body and trailer written, and only then
//! is it given its name, atomically and without replacing anything
//! (`linkat(2)`). A process killed at any instant before that leaves
//! nothing; after it, a complete segment whose creator lock is gone,
//! which `gc` removes. An attacher never sees a half-built segment.
//!
//! **Removing** a name is done only if it still leads to this segment's
//! inode ([`crate::os::remove_if`]), so an owner never removes a namesake
//! someone created after its own segment was removed.

pub(crate) mod info;
mod inherit;
use inherit::Tracked;
mod layout;
mod lifetime;
pub(crate) mod liveness;
mod mapping;
mod probe;
pub(crate) mod slots;
pub(crate) mod types;

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use rustix::fd::{BorrowedFd, OwnedFd};

pub(crate) use layout::{align_up, data_len, segment_len, Trailer, FLAG_PERSISTENT, TRAILER_FLAGS, TRAILER_LEN};
pub(crate) use lifetime::{lifetime_api, HasSegment};
pub(crate) use mapping::{remove_named, Backing};
#[cfg(fuzzing)]
pub(crate) use probe::read_layout;
pub(crate) use probe::{probe, read_trailer, Layout};

use crate::kind::SegmentKind;
use crate::os::{self, Errno, FileId};
use crate::{name, Error, Result};
use mapping::Mapping;

/// A mapped segment or file, with its validated layout.
#[derive(Debug)]
pub(crate) struct Segment {
    map: Mapping,
    layout: Layout,
    /// This handle created the segment (its creator lock is ours).
    creator: bool,
}

/// The bytes before the data of a segment that is not an array: the
/// shmkit head, saying what it holds (see `types`).
pub(crate) fn other_head(types: &[(&str, String)]) -> Vec<u8> {
    types::encode(types)
}

impl Segment {
    /// Creates segment `name` of `kind`: `head` (a `.npy` header, or
    /// [`other_head`]) then
    /// `data_len` bytes of zeroed data, owned by the returned handle.
    /// `init` runs on the data before any other process can see it; if it
    /// fails, nothing was ever visible.
    pub fn create(
        name: &str,
        kind: SegmentKind,
        head: &[u8],
        data_len: usize,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        Segment::create_inner(name, kind, head, data_len, Pages::Populated, init)
    }

    /// Like [`create`](Self::create), with every page reserved but none
    /// mapped here: for segments whose users map their own parts (a
    /// pool's, where each helper touches only its rings).
    pub fn create_unpopulated(
        name: &str,
        kind: SegmentKind,
        head: &[u8],
        data_len: usize,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        Segment::create_inner(name, kind, head, data_len, Pages::Reserved, init)
    }

    /// Like [`create`](Self::create), with the data's pages neither
    /// reserved nor mapped (reading as zeros): for segments whose users
    /// reserve their own parts, in parallel, with
    /// [`reserve_data`](Self::reserve_data), before any of them touches a
    /// page (an unreserved page of a full `/dev/shm` is a SIGBUS).
    pub fn create_sparse(
        name: &str,
        kind: SegmentKind,
        head: &[u8],
        data_len: usize,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        Segment::create_inner(name, kind, head, data_len, Pages::Sparse, init)
    }

    /// Reserves (allocates) the pages of data bytes `offset..offset + len`
    /// and maps them in this process: a sparse segment's part this process
    /// is to use. [`Error::NoSpace`] if `/dev/shm` cannot hold them.
    pub fn reserve_data(&self, offset: usize, len: usize) -> Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.data_len()) {
            return Err(Error::InvalidArgument(format!("{len} bytes at {offset} past the data")));
        }
        if len == 0 {
            return Ok(()); // fallocate refuses an empty range
        }
        let at = self.layout.data_offset + offset;
        if !self.is_file() && self.reserve_by_mapping(at, len)? {
            return Ok(());
        }
        reserve_at(&self.map.fd(), at as u64, len as u64, true, self.map.backing())?;
        self.map.populate_range(at, len, !self.is_file());
        Ok(())
    }

    /// Allocates a segment's bytes `at..at + len` by mapping them for
    /// writing, which maps them too; `Ok(false)` where the kernel cannot
    /// (before Linux 5.14: `fallocate` then). Not `fallocate` first:
    /// tmpfs holds the file's lock for a whole `fallocate`, so processes
    /// reserving their own parts of one segment at once (the ranks of an
    /// MPI node) would take turns; page faults only share the page cache's
    /// finer locks (measured: 128 MiB each on 2 ranks, 66 and 97 ms with
    /// `fallocate`, 90 and 90 ms this way).
    fn reserve_by_mapping(&self, at: usize, len: usize) -> Result<bool> {
        let no_space =
            |(available, size)| Error::NoSpace { name: self.name().to_owned(), requested: len as u64, available, size };
        // Refused before any page is taken when more than is free now
        // (`fallocate` would take pages until the filesystem is full, then
        // give them back). A size of 0 is a tmpfs without a limit, or no
        // answer: nothing to check against then.
        let room = os::space(self.map.fd());
        if room.1 > 0 && len as u64 > room.0 {
            return Err(no_space(room));
        }
        match self.map.populate_write_range(at, len) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) => {
                // Some pages were taken (others filled /dev/shm meanwhile):
                // give them back, as a failed `fallocate` does.
                let _ = os::release_range(self.map.fd(), at as u64, len as u64);
                // A page tmpfs had no room for is EFAULT; anything else
                // (ENOMEM: a memory cgroup's limit) says so itself.
                match e.raw_os_error() {
                    Some(libc::EFAULT) => Err(no_space(os::space(self.map.fd()))),
                    _ => Err(Error::from_io("madvise(MADV_POPULATE_WRITE)", self.name(), e)),
                }
            }
        }
    }

    fn create_inner(
        name: &str,
        kind: SegmentKind,
        head: &[u8],
        data_len: usize,
        pages: Pages,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        crate::role::guard(|| format!("created segment '{name}'"));
        let name = name::validate_new(name)?;
        let total = layout::segment_len(head.len(), data_len)
            .ok_or_else(|| Error::InvalidArgument(format!("a segment of {data_len} bytes overflows")))?;
        let io = |op| move |e| Error::from_io(op, name, e);
        let dir = os::shm_dir().map_err(Error::shm_dir)?;
        if os::id_at(dir, name).is_ok() {
            // Spare the work; `link` decides.
            return Err(Error::AlreadyExists { name: name.to_owned(), creator_gone: info::creator_gone(name) });
        }
        let fd = Tracked::new(os::unnamed_file(dir, 0o600).map_err(io("open(O_TMPFILE)"))?);
        // From here until `link`, a crash leaves nothing: the file has no name.
        announce(&fd, name)?;
        let backing = Backing::Shm { name: name.to_owned(), owner: false.into() };
        let trailer = Trailer {
            flags: 0,
            pid: os::current_pid(),
            kind: kind.code(),
            start_time: os::own_start_time(),
            data_offset: head.len() as u64,
            data_len: data_len as u64,
            pid_namespace: os::pid_namespace(),
        };
        let mut seg = Segment::build(fd, total, pages, backing, head, Some(trailer), init)?;
        os::link(seg.map.fd(), dir, name).map_err(|e| link_error(name, e))?;
        seg.map.own();
        seg.creator = true;
        seg.hold_by_name(dir, name);
        Ok(seg)
    }

    /// Holds the published segment through an fd opened by its name, if
    /// that works: the kernel shows an unnamed file's fd as `/dev/shm/#INODE`
    /// forever, and `shmkit ls` tells a segment being built from one whose
    /// name was removed under it by those paths. Best effort: if it fails,
    /// the first fd (with its creator lock) stays the handle's.
    fn hold_by_name(&mut self, dir: BorrowedFd<'_>, name: &str) {
        let Ok(named) = os::open_at(dir, name).map(Tracked::new) else { return };
        let same = os::stat(&named).is_ok_and(|s| s.id == self.id());
        if same && liveness::announce(&named, liveness::CREATOR).unwrap_or(false) {
            self.map.replace_fd(named);
        }
    }

    /// Creates the `.npy` file `path` (which must not exist) holding `head`
    /// then `data_len` zeroed bytes, named only once written where the
    /// filesystem allows (`O_TMPFILE`). Never truncates an existing file:
    /// another process may have it mapped, and truncation would SIGBUS it.
    pub fn create_file(
        path: &Path,
        head: &[u8],
        data_len: usize,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        crate::role::guard(|| format!("created file {}", path.display()));
        let label = path.display().to_string();
        let label = label.as_str();
        let io = |op| move |e| Error::from_io(op, label, e);
        let total = head.len().checked_add(data_len).filter(|&t| t <= isize::MAX as usize);
        let total = total.ok_or_else(|| Error::InvalidArgument(format!("a file of {data_len} bytes overflows")))?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let file_name = path.file_name().ok_or_else(|| Error::InvalidName {
            name: label.to_owned(),
            reason: "a file path must end in a file name",
        })?;
        let dir = os::open_dir(parent).map_err(io("open"))?;
        let backing = Backing::File { path: path.to_owned() };
        match os::unnamed_file(&dir, 0o644).map(Tracked::new) {
            Ok(fd) => {
                let seg = Segment::build(fd, total, Pages::Reserved, backing, head, None, init)?;
                os::link(seg.map.fd(), &dir, file_name).map_err(|e| link_error(label, e))?;
                Ok(seg)
            }
            // Filesystems without O_TMPFILE: create by name, removed again
            // (by the guard) if anything below fails or panics.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
                let fd = Tracked::new(os::create_at(&dir, file_name, 0o644).map_err(io("create"))?);
                let guard = RemoveOnDrop { dir: &dir, name: file_name };
                let seg = Segment::build(fd, total, Pages::Reserved, backing, head, None, init)?;
                std::mem::forget(guard); // built: the file stays
                Ok(seg)
            }
            Err(e) => Err(io("open(O_TMPFILE)")(e)),
        }
    }

    /// Sizes a fresh file, maps it, writes `head` and `trailer`, runs
    /// `init`, and writes the head's first byte last (release).
    fn build(
        fd: Tracked,
        total: usize,
        pages: Pages,
        backing: Backing,
        head: &[u8],
        trailer: Option<Trailer>,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        match pages {
            Pages::Sparse => {
                // Sized, with the header and trailer pages reserved: only
                // the data's pages are left to their users.
                os::set_len(&*fd, total as u64).map_err(|e| Error::from_io("ftruncate", backing.label(), e.into()))?;
                reserve_at(&fd, 0, head.len() as u64, true, &backing)?;
                reserve_at(&fd, (total - TRAILER_LEN) as u64, TRAILER_LEN as u64, true, &backing)?;
            }
            _ => reserve(&fd, total, &backing)?,
        }
        let populate = pages == Pages::Populated;
        let map = Mapping::new(fd, total, backing)?;
        if let Some(t) = trailer {
            // First, so that `shmkit ls` can tell what an unnamed segment
            // being built is, and whose, while it takes /dev/shm space.
            map.write(total - TRAILER_LEN, &t.encode());
        }
        if populate {
            // Fault every page in now, in bulk: first-touch faults one page
            // at a time cost 1.9 s per GiB on a 2-core test VM, this 0.36 s.
            map.populate(true);
        }
        map.write(1, &head[1..]);
        let data_len = trailer.map_or(total - head.len(), |t| t.data_len as usize);
        let kind = trailer.map_or(SegmentKind::Array, |t| SegmentKind::from_code(t.kind));
        let types = match kind {
            SegmentKind::Array | SegmentKind::Stream => Vec::new(), // a .npy header, no types
            _ => types::decode(head).map_err(|e| Error::bad_header(map.backing().label(), e))?,
        };
        let layout = Layout { kind, total_len: total, data_offset: head.len(), data_len, header: None, trailer, types };
        let seg = Segment { map, layout, creator: false };
        init(&seg)?;
        // Release: whoever reads the first byte (acquire) sees all the rest.
        seg.map.atomic_u8(0).store(head[0], Ordering::Release);
        Ok(seg)
    }

    /// Opens segment `name`, which must hold a `kind`.
    ///
    /// The handle does not own the segment: dropping it only unmaps.
    pub fn open(name: &str, kind: SegmentKind) -> Result<Segment> {
        crate::role::guard(|| format!("opened segment '{name}'"));
        let name = name::validate(name)?;
        let dir = os::shm_dir().map_err(Error::shm_dir)?;
        let fd = Tracked::new(os::open_at(dir, name).map_err(|e| Error::from_io("open", name, e))?);
        Segment::map_existing(fd, Backing::Shm { name: name.to_owned(), owner: false.into() }, kind)
    }

    /// Opens the `.npy` file `path` read-write.
    pub fn open_file(path: &Path) -> Result<Segment> {
        crate::role::guard(|| format!("opened file {}", path.display()));
        let label = path.display().to_string();
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path);
        let file = file.map_err(|e| Error::from_io("open", &label, e))?;
        Segment::map_existing(Tracked::new(file.into()), Backing::File { path: path.to_owned() }, SegmentKind::Array)
    }

    fn map_existing(fd: Tracked, backing: Backing, kind: SegmentKind) -> Result<Segment> {
        let layout = probe(&fd, backing.label())?;
        if layout.kind != kind {
            return Err(Error::WrongKind { name: backing.label().to_owned(), expected: kind, found: layout.kind });
        }
        if kind != SegmentKind::Array {
            trusted(&fd, backing.label())?;
        }
        let map = Mapping::new(fd, layout.total_len, backing)?;
        // Acquire pairs with the creator's release of the first byte.
        let _ = map.atomic_u8(0).load(Ordering::Acquire);
        Ok(Segment { map, layout, creator: false })
    }

    /// `Err(Error::Inherited)` in a child forked from the process that
    /// made this handle: it shares the handle's open file, so its claims,
    /// slots and liveness locks would be its parent's.
    pub fn check_process(&self) -> Result<()> {
        match self.map.is_maker() {
            true => Ok(()),
            false => Err(Error::Inherited { name: self.name().to_owned(), maker: self.map.maker() }),
        }
    }

    /// Refuses the segment unless it holds exactly `types` (see `types`):
    /// [`Error::WrongType`] names both.
    pub fn check_types(&self, want: &[(&str, String)]) -> Result<()> {
        let found = &self.layout.types;
        let same = found.len() == want.len() && found.iter().zip(want).all(|((r, t), (wr, wt))| r == wr && t == wt);
        if same {
            return Ok(());
        }
        let want: Vec<(String, String)> = want.iter().map(|(r, t)| ((*r).to_owned(), t.clone())).collect();
        Err(Error::WrongType {
            name: self.name().to_owned(),
            kind: self.layout.kind,
            expected: types::describe(&want),
            found: types::describe(found),
        })
    }

    /// The segment name, or the file path for files.
    pub fn name(&self) -> &str {
        self.map.backing().label()
    }

    /// The validated layout read at open (or made at create).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// True if this handle removes the name when dropped.
    pub fn is_owner(&self) -> bool {
        self.map.is_owner()
    }

    /// True if this handle owns the name and this process made it: what
    /// removes the name at close (a forked child's copy never does).
    pub fn owns_here(&self) -> bool {
        self.map.is_owner() && self.map.is_maker()
    }

    /// True for a file on disk.
    pub fn is_file(&self) -> bool {
        matches!(self.map.backing(), Backing::File { .. })
    }

    /// Device and inode: which segment this is, whatever its name says now.
    pub fn id(&self) -> FileId {
        self.map.id()
    }

    /// The handle's own open file (its locks live there).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    /// True once the segment's name has been removed.
    pub fn is_unlinked(&self) -> bool {
        self.map.is_unlinked()
    }

    /// Maps every page into this process now, in one call: for writing in
    /// a segment, for reading in a file (writable pages of a file would all
    /// be written back to disk, and a sparse file's holes filled).
    pub fn populate(&self) {
        self.map.populate(!self.is_file());
    }

    /// True if this handle created the segment.
    pub fn is_creator(&self) -> bool {
        self.creator
    }

    /// Writes a file's changes to disk (`msync(2)`); no-op for segments.
    pub fn flush(&self) -> Result<()> {
        self.map.flush().map_err(|e| Error::from_io("msync", self.name(), e))
    }

    /// Marks the segment persistent (so `gc` spares it) and gives up the
    /// right to remove it on drop. Only the creating handle may: it holds
    /// the creator lock, so `gc` (which must take that lock first) always
    /// sees the flag once it may remove the segment. Calling it again is
    /// harmless; for a file, which shmkit never removes, it does nothing.
    pub fn persist(&self) -> Result<()> {
        if self.is_file() {
            return Ok(());
        }
        self.check_process()?;
        if !self.creator {
            return Err(Error::NotOwner { name: self.name().to_owned() });
        }
        if self.layout.trailer.is_some() {
            self.atomic_flags().fetch_or(FLAG_PERSISTENT, Ordering::AcqRel);
        }
        self.map.disown();
        Ok(())
    }

    /// The trailer's flags word; only for segments with a trailer.
    pub fn atomic_flags(&self) -> &AtomicU32 {
        assert!(self.layout.trailer.is_some(), "'{}' has no trailer", self.name());
        self.map.atomic_u32(self.layout.total_len - TRAILER_LEN + TRAILER_FLAGS)
    }

    /// Removes the name now if this handle owns it and it still leads
    /// here; reports what `Drop` would ignore. The mapping stays.
    pub fn remove_name(&self) -> Result<()> {
        match self.is_owner() {
            true => self.map.unlink(),
            false => Err(Error::NotOwner { name: self.name().to_owned() }),
        }
    }

    /// What closing the handle does before it unmaps: an owner (in the
    /// process that made it) removes the name, reporting errors; anyone
    /// else does nothing.
    pub fn close_name(&self) -> Result<()> {
        match self.owns_here() {
            true => self.map.unlink(),
            false => Ok(()),
        }
    }

    /// Counts a lock guard pointing into this segment (see `Mapping::pin`).
    pub fn pin(&self) {
        self.map.pin();
    }

    /// Uncounts a lock guard.
    pub fn unpin(&self) {
        self.map.unpin();
    }

    /// Bytes of data (the array's elements, or the primitive's body).
    pub fn data_len(&self) -> usize {
        self.layout.data_len
    }

    /// The first byte of the data; 64-aligned for segments.
    pub fn data_ptr(&self) -> *mut u8 {
        // SAFETY: data_offset <= total_len, the mapping's length (checked by
        // the probe, or by construction at create).
        unsafe { self.map.ptr().add(self.layout.data_offset) }
    }

    /// A pointer to `len` bytes at `offset` of the data, bounds-checked.
    pub fn bytes(&self, offset: usize, len: usize) -> *mut u8 {
        let end = offset.checked_add(len).filter(|&e| e <= self.data_len());
        assert!(end.is_some(), "{len} bytes at {offset} past the data of '{}'", self.name());
        // SAFETY: offset + len lies inside the data (checked above), which
        // lies inside the mapping.
        unsafe { self.data_ptr().add(offset) }
    }

    /// Copies `bytes` into the data at `offset`, bounds-checked. For data
    /// no other process can touch yet (not published) or guarded by a lock.
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        let at = self.bytes(offset, bytes.len());
        // SAFETY: `self.bytes` checked that the destination lies in the data.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len()) };
    }

    /// The atomic u32 at `offset` of the data, shared with other processes.
    pub fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.checked_add(4).is_some_and(|e| e <= self.data_len()), "u32 at {offset} past the data");
        self.map.atomic_u32(self.layout.data_offset + offset)
    }

    /// The atomic byte at `offset` of the data, shared with other processes.
    pub fn atomic_u8(&self, offset: usize) -> &AtomicU8 {
        assert!(offset < self.data_len(), "byte at {offset} past the data");
        self.map.atomic_u8(self.layout.data_offset + offset)
    }

    /// The atomic u64 at `offset` of the data, shared with other processes.
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.checked_add(8).is_some_and(|e| e <= self.data_len()), "u64 at {offset} past the data");
        self.map.atomic_u64(self.layout.data_offset + offset)
    }

    /// The `n` atomic u64 at `offset` of the data, shared with other processes.
    pub fn atomic_u64s(&self, offset: usize, n: usize) -> &[AtomicU64] {
        let end = n.checked_mul(8).and_then(|b| offset.checked_add(b));
        assert!(end.is_some_and(|e| e <= self.data_len()), "{n} u64 at {offset} past the data");
        self.map.atomic_u64s(self.layout.data_offset + offset, n)
    }
}

/// Removes a half-made file by name unless disarmed (its name emptied).
struct RemoveOnDrop<'a> {
    dir: &'a OwnedFd,
    name: &'a std::ffi::OsStr,
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = os::unlink_at(self.dir, self.name);
    }
}

/// What a failed `linkat` means: the name is taken, or (no `/proc` and no
/// privilege for `AT_EMPTY_PATH`) the segment cannot be named at all.
fn link_error(name: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            Error::AlreadyExists { name: name.to_owned(), creator_gone: info::creator_gone(name) }
        }
        _ => Error::Io { op: "linkat (naming the new segment; is /proc mounted?)", name: name.to_owned(), source: e },
    }
}

/// Refuses a segment whose memory holds lock words (anything but an
/// array) unless this user owns it and no one else may write it: glibc
/// follows pointers stored in a robust mutex, so a lock another user can
/// write is an arbitrary write into this process.
fn trusted(fd: &OwnedFd, name: &str) -> Result<()> {
    let st = os::stat(fd).map_err(|e| Error::from_io("fstat", name, e))?;
    if st.uid != os::effective_uid() || st.mode & 0o077 != 0 {
        let why =
            format!("owned by uid {} with mode {:o}; shmkit makes them 0600, owned by their user", st.uid, st.mode);
        return Err(Error::Untrusted { name: name.to_owned(), reason: why });
    }
    Ok(())
}

/// Announces the creator of segment `name` through `fd`.
fn announce(fd: &OwnedFd, name: &str) -> Result<()> {
    match liveness::announce(fd, liveness::CREATOR) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::from_io("fcntl", name, std::io::Error::other("its creator lock is taken"))),
        Err(e) => Err(Error::from_io("fcntl(F_OFD_SETLK)", name, e)),
    }
}

/// What a new segment's pages are when it gets its name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Pages {
    /// Reserved, and mapped in the creator.
    Populated,
    /// Reserved, mapped by each user as it touches them.
    Reserved,
    /// Only the header's and trailer's reserved (see `create_sparse`).
    Sparse,
}

/// Sizes a new file to `len`, reserving its pages where the filesystem can.
fn reserve(fd: &OwnedFd, len: usize, backing: &Backing) -> Result<()> {
    reserve_at(fd, 0, len as u64, false, backing)
}

/// Reserves bytes `offset..offset + len` of the file (see [`reserve`]).
/// On a filesystem without fallocate, pages come on demand: a file
/// `sized` already (a sparse segment's range) stays as it is, another is
/// sized to cover the range.
fn reserve_at(fd: &impl rustix::fd::AsFd, offset: u64, len: u64, sized: bool, backing: &Backing) -> Result<()> {
    let label = backing.label();
    let reserved = os::reserve_range(fd, offset, len).or_else(|e| match e {
        Errno::OPNOTSUPP if sized => Ok(()),
        Errno::OPNOTSUPP => os::set_len(fd, offset + len),
        _ => Err(e),
    });
    reserved.map_err(|e| match (e, backing) {
        (Errno::NOSPC, _) | (Errno::FBIG, Backing::Shm { .. }) => {
            let (available, size) = os::space(fd);
            Error::NoSpace { name: label.to_owned(), requested: len, available, size }
        }
        (Errno::FBIG, Backing::File { .. }) => {
            let op = "fallocate (larger than its filesystem allows a file)";
            Error::Io { op, name: label.to_owned(), source: e.into() }
        }
        _ => Error::from_io("fallocate", label, e.into()),
    })
}
