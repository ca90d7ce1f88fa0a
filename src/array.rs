//! `SharedArray`: an n-dimensional array in a named segment or `.npy` file.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::Ordering;

use ndarray::{ArrayBase, ArrayView, ArrayViewMut, Axis, Data, Dimension, IntoDimension, IxDyn, ShapeBuilder, Slice};

use crate::dtype::Element;
use crate::info::{ArrayInfo, SegmentKind};
use crate::layout::{self, Header, Trailer, FLAG_PERSISTENT, MAGIC, TRAILER_FLAGS, TRAILER_LEN};
use crate::segment::{Backing, Mapping};
use crate::{name, os, Error, Result};

/// An n-dimensional array of `T` living in shared memory (or a mapped file),
/// visible to every process that opens it by name.
///
/// The segment is a valid `.npy` file, so numpy opens it too:
/// `numpy.load('/dev/shm/NAME', mmap_mode='r+')`.
///
/// **Lifetimes.** The handle returned by [`create`](Self::create) owns the
/// segment and unlinks its name when dropped; handles from
/// [`open`](Self::open) only unmap. An attacher can never remove a segment
/// others still use. [`persist`](Self::persist) keeps a segment past its
/// owner; [`crate::unlink`] removes it later.
///
/// **Concurrency.** Views borrow the handle, so one process cannot alias a
/// mutable view. Other processes may write the same memory at any time:
/// give each one its own rows (see [`rows_mut`](Self::rows_mut)) or
/// coordinate, just as with numpy.
///
/// ```
/// use shmkit::SharedArray;
/// # let name = format!("doc-array-{}", std::process::id());
/// let mut a = SharedArray::<f64, _>::create(&name, (2, 3))?;
/// a.view_mut().fill(1.5);
///
/// let b = SharedArray::<f64, ndarray::Ix2>::open(&name)?; // by name alone
/// assert_eq!(b.view().sum(), 9.0);
/// drop(b); // unmaps
/// drop(a); // unmaps and unlinks
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct SharedArray<T: Element, D: Dimension = IxDyn> {
    map: Mapping,
    dim: D,
    fortran: bool,
    offset: usize,
    trailer: Option<Trailer>,
    _elem: PhantomData<T>,
}

impl<T: Element, D: Dimension> SharedArray<T, D> {
    /// Creates segment `name` holding a zeroed array of `shape`, owned by
    /// the returned handle.
    ///
    /// Pages are reserved now, so a full `/dev/shm` is [`Error::NoSpace`]
    /// here rather than SIGBUS later. Fails with [`Error::AlreadyExists`]
    /// if the name is taken.
    pub fn create<Sh: IntoDimension<Dim = D>>(name: &str, shape: Sh) -> Result<Self> {
        Self::create_kind(name, shape, SegmentKind::Array, |_| {})
    }

    /// Creates a segment of `kind`, running `init` on it before any other
    /// process can see it (the ready flag is set after `init` returns).
    pub(crate) fn create_kind<Sh: IntoDimension<Dim = D>>(
        name: &str,
        shape: Sh,
        kind: SegmentKind,
        init: impl FnOnce(&mut Self),
    ) -> Result<Self> {
        let name = name::validate(name)?;
        let dim = shape.into_dimension();
        let (header, data_len) = Self::header_for(&dim)?;
        let total = layout::segment_len(header.len(), data_len).ok_or_else(|| Self::overflow(&dim))?;
        let map = Mapping::create_shm(name, total, true)?;
        let trailer = Trailer {
            flags: 0,
            pid: os::current_pid(),
            kind: kind.code(),
            start_time: os::process_start_time(os::current_pid()).unwrap_or(0),
            data_offset: header.len() as u64,
            data_len: data_len as u64,
        };
        map.write(total - TRAILER_LEN, &trailer.encode());
        Ok(Self::publish(map, dim, &header, Some(trailer), init))
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique<Sh: IntoDimension<Dim = D>>(shape: Sh) -> Result<Self> {
        let dim = shape.into_dimension();
        name::retry_unique(|n| Self::create(n, dim.clone()))
    }

    /// Creates segment `name` holding a copy of `array`.
    pub fn create_from<S: Data<Elem = T>>(name: &str, array: &ArrayBase<S, D>) -> Result<Self> {
        let mut shared = Self::create(name, array.raw_dim())?;
        shared.view_mut().assign(array);
        Ok(shared)
    }

    /// Opens segment `name` by name alone; dtype and dimensionality are
    /// read from the segment and checked against `T` and `D`.
    ///
    /// The handle does not own the segment: dropping it only unmaps.
    pub fn open(name: &str) -> Result<Self> {
        let name = name::validate(name)?;
        Self::from_mapping(Mapping::open_shm(name)?)
    }

    /// Opens segment `name`, which must be of `kind`.
    pub(crate) fn open_kind(name: &str, kind: SegmentKind) -> Result<Self> {
        let array = Self::open(name)?;
        let found = array.trailer.map_or(SegmentKind::Array, |t| SegmentKind::from_code(t.kind));
        if found != kind {
            return Err(Error::WrongKind { name: name.to_owned(), expected: kind, found });
        }
        Ok(array)
    }

    /// The atomic u32 at byte `offset` of the data, shared with other processes.
    pub(crate) fn atomic_u32_at(&self, offset: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(offset + 4 <= self.len() * size_of::<T>(), "atomic u32 at {offset} past the data");
        self.map.atomic_u32(self.offset + offset)
    }

    /// The atomic u64 at byte `offset` of the data, shared with other processes.
    pub(crate) fn atomic_u64_at(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(offset + 8 <= self.len() * size_of::<T>(), "atomic u64 at {offset} past the data");
        self.map.atomic_u64(self.offset + offset)
    }

    /// A pointer to `len` bytes at byte `offset` of the data.
    pub(crate) fn bytes_at(&self, offset: usize, len: usize) -> *mut u8 {
        let end = offset.checked_add(len).filter(|&e| e <= self.len() * size_of::<T>());
        assert!(end.is_some(), "{len} bytes at {offset} past the data");
        // SAFETY: offset + len lies inside the data (checked above), which
        // lies inside the mapping (checked when the header was read).
        unsafe { self.map.ptr().add(self.offset + offset) }
    }

    /// Like [`open`](Self::open), and also requires this exact shape.
    pub fn open_with_shape<Sh: IntoDimension<Dim = D>>(name: &str, shape: Sh) -> Result<Self> {
        let array = Self::open(name)?;
        let want = shape.into_dimension();
        if array.dim != want {
            let (expected, found) = (want.slice().to_vec(), array.shape().to_vec());
            return Err(Error::WrongShape { name: name.to_owned(), expected, found });
        }
        Ok(array)
    }

    /// Creates the `.npy` file `path` holding a zeroed array of `shape`,
    /// mapped read-write. The file must not exist yet: truncating a file
    /// that another process maps would crash that process.
    pub fn create_file<Sh: IntoDimension<Dim = D>>(path: impl AsRef<Path>, shape: Sh) -> Result<Self> {
        let dim = shape.into_dimension();
        let (header, data_len) = Self::header_for(&dim)?;
        let total = header.len().checked_add(data_len).ok_or_else(|| Self::overflow(&dim))?;
        let map = Mapping::create_file(path.as_ref(), total)?;
        Ok(Self::publish(map, dim, &header, None, |_| {}))
    }

    /// Opens the `.npy` file `path` read-write, checking dtype and dimensionality.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_mapping(Mapping::open_file(path.as_ref())?)
    }

    /// Writes the header into a fresh mapping, runs `init`, and sets the
    /// ready flag last.
    fn publish(map: Mapping, dim: D, header: &[u8], trailer: Option<Trailer>, init: impl FnOnce(&mut Self)) -> Self {
        map.write(1, &header[1..]);
        let offset = header.len();
        let mut array = SharedArray { map, dim, fortran: false, offset, trailer, _elem: PhantomData };
        init(&mut array);
        // Release: an attacher that sees the magic's first byte (acquire)
        // also sees the rest of the header, the trailer and what init wrote.
        array.map.atomic_u8(0).store(MAGIC[0], Ordering::Release);
        array
    }

    fn header_for(dim: &D) -> Result<(Vec<u8>, usize)> {
        let data_len = layout::data_len(dim.slice(), size_of::<T>()).ok_or_else(|| Self::overflow(dim))?;
        Ok((Header::encode(T::DTYPE, dim.slice(), false), data_len))
    }

    fn overflow(dim: &D) -> Error {
        Error::SizeOverflow { shape: dim.slice().to_vec(), itemsize: size_of::<T>() }
    }

    /// Validates an existing mapping's header against `T` and `D`.
    fn from_mapping(map: Mapping) -> Result<Self> {
        let info = ArrayInfo::read(&map)?;
        let name = map.backing().label();
        if crate::DType::from_descr(&info.dtype) != Some(T::DTYPE) {
            return Err(Error::WrongDtype { name: name.to_owned(), expected: T::DTYPE.descr(), found: info.dtype });
        }
        let dim = D::from_dimension(&IxDyn(&info.shape));
        let dim = dim.ok_or_else(|| Error::WrongNdim {
            name: name.to_owned(),
            expected: D::NDIM.unwrap_or(0),
            found: info.shape.len(),
        })?;
        if info.data_offset % align_of::<T>() != 0 {
            return Err(Error::bad_header(
                name,
                format!("data offset {} is not aligned for {}", info.data_offset, T::DTYPE),
            ));
        }
        let (fortran, offset, trailer) = (info.fortran, info.data_offset, info.trailer);
        Ok(SharedArray { map, dim, fortran, offset, trailer, _elem: PhantomData })
    }

    /// The segment name, or the file path for file-backed arrays.
    pub fn name(&self) -> &str {
        self.map.backing().label()
    }

    /// Length of each axis.
    pub fn shape(&self) -> &[usize] {
        self.dim.slice()
    }

    /// The shape as an ndarray dimension.
    pub fn raw_dim(&self) -> D {
        self.dim.clone()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dim.size()
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if this handle will unlink the segment when dropped.
    pub fn is_owner(&self) -> bool {
        matches!(self.map.backing(), Backing::Shm { owner: true, .. })
    }

    /// A read-only view of the whole array.
    pub fn view(&self) -> ArrayView<'_, T, D> {
        // SAFETY: from_mapping/publish checked that offset + len * size_of::<T>()
        // lies inside the mapping and that offset is aligned for T; the view
        // borrows self, so the mapping outlives it. Writes by other processes
        // are outside Rust's model, as with any shared memory (type docs).
        unsafe { ArrayView::from_shape_ptr(self.dim.clone().set_f(self.fortran), self.data_ptr()) }
    }

    /// A mutable view of the whole array.
    pub fn view_mut(&mut self) -> ArrayViewMut<'_, T, D> {
        // SAFETY: as in `view`; `&mut self` makes this the only view in this process.
        unsafe { ArrayViewMut::from_shape_ptr(self.dim.clone().set_f(self.fortran), self.data_ptr()) }
    }

    /// A view of rows `range` along the first axis: a helper's share.
    pub fn rows(&self, range: Range<usize>) -> Result<ArrayView<'_, T, D>> {
        let slice = self.check_rows(&range)?;
        Ok(self.view().slice_axis_move(Axis(0), slice))
    }

    /// A mutable view of rows `range` along the first axis.
    ///
    /// Helpers in different processes that each take disjoint rows can
    /// write at once without locks.
    pub fn rows_mut(&mut self, range: Range<usize>) -> Result<ArrayViewMut<'_, T, D>> {
        let slice = self.check_rows(&range)?;
        Ok(self.view_mut().slice_axis_move(Axis(0), slice))
    }

    fn check_rows(&self, range: &Range<usize>) -> Result<Slice> {
        let len = self.shape().first().copied().unwrap_or(0);
        if range.start > range.end || range.end > len || self.dim.ndim() == 0 {
            return Err(Error::OutOfRange { start: range.start, end: range.end, len });
        }
        Ok(Slice::from(range.clone()))
    }

    /// All elements in memory order, as a slice.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: as in `view`: len elements of T at an aligned, in-bounds offset.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.len()) }
    }

    /// All elements in memory order, as a mutable slice.
    pub fn as_slice_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`; `&mut self` excludes other views in this process.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), self.len()) }
    }

    fn data_ptr(&self) -> *mut T {
        debug_assert!(self.offset + self.len() * size_of::<T>() <= self.map.len());
        // SAFETY: offset <= mapping length, checked when the header was read.
        unsafe { self.map.ptr().add(self.offset).cast() }
    }

    /// Writes a file-backed array's changes to disk (`msync(2)`); for a
    /// segment, a no-op that always succeeds.
    pub fn flush(&self) -> Result<()> {
        self.map.flush().map_err(|e| Error::from_io("msync", self.name(), e))
    }

    /// Keeps the segment after this handle is gone: marks it persistent
    /// (so `shmkit gc` spares it) and gives up the right to unlink it.
    /// Remove it later with [`crate::unlink`].
    pub fn persist(&mut self) {
        if self.trailer.is_some() {
            let flags = self.map.len() - TRAILER_LEN + TRAILER_FLAGS;
            self.map.atomic_u32(flags).fetch_or(FLAG_PERSISTENT, Ordering::AcqRel);
        }
        self.map.disown();
    }

    /// Unlinks the segment's name now, reporting errors; the mapping stays
    /// usable until the handle is dropped. Only an owner may: an attacher
    /// gets an error and nothing is removed.
    pub fn unlink(&mut self) -> Result<()> {
        match self.is_owner() {
            true => self.map.unlink(),
            false => Err(Error::from_io(
                "unlink",
                self.name(),
                std::io::Error::other("this handle does not own the segment"),
            )),
        }
    }

    /// Closes the handle, reporting what `Drop` would ignore: an owner
    /// unlinks (an error if the name was already removed), an attacher
    /// only unmaps.
    pub fn close(mut self) -> Result<()> {
        match self.is_owner() {
            true => self.map.unlink(),
            false => Ok(()),
        }
    }

    /// This array with a dynamic number of dimensions.
    pub fn into_dyn(self) -> SharedArray<T, IxDyn> {
        let SharedArray { map, dim, fortran, offset, trailer, .. } = self;
        SharedArray { map, dim: dim.into_dyn(), fortran, offset, trailer, _elem: PhantomData }
    }

    /// The inode of the segment or file: its identity, unlike its name.
    pub(crate) fn inode(&self) -> u64 {
        self.map.inode()
    }

    /// Maps every page of the array into this process now, in one call
    /// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+; a no-op before),
    /// instead of one page fault per page on first use.
    ///
    /// Measured on the development VM, per GiB: 0.2 s once, after which
    /// passes over the array ran about 10% faster than over a mapping
    /// filled by page faults. Pool helpers do this when they first attach.
    pub fn populate(&self) {
        self.map.populate();
    }

    /// True once the segment's name has been removed.
    pub(crate) fn is_unlinked(&self) -> bool {
        self.map.is_unlinked()
    }

    /// True for a file-backed array.
    pub(crate) fn is_file(&self) -> bool {
        matches!(self.map.backing(), Backing::File { .. })
    }

    /// Header facts and creator of this array, as read at open/create.
    pub fn info(&self) -> Result<ArrayInfo> {
        ArrayInfo::read(&self.map)
    }
}

impl<T: Element, D: Dimension> fmt::Debug for SharedArray<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray")
            .field("name", &self.name())
            .field("dtype", &T::DTYPE)
            .field("shape", &self.shape())
            .field("owner", &self.is_owner())
            .finish()
    }
}
