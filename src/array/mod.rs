//! `SharedArray`: an n-dimensional array in a named segment or `.npy`
//! file: a typed view over a segment whose `.npy` header holds its
//! dtype and shape.

mod claim;
mod dyn_array;
pub(crate) mod reduce;
mod view;

pub use dyn_array::DynArray;
pub use view::{SliceMut, SliceRef, View, ViewMut};

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::Path;

use ndarray::{ArrayBase, ArrayView, ArrayViewMut, Axis, Data, Dimension, IntoDimension, IxDyn, ShapeBuilder, Slice};

use crate::kind::SegmentKind;
use crate::npy::dtype::Element;
use crate::npy::header::Header;
use crate::os::FileId;
use crate::segment::info::SegmentInfo;
use crate::segment::{data_len, Segment};
use crate::{name, Error, Result};
pub(crate) use claim::Claim;
use claim::Claims;

/// An n-dimensional array of `T` living in shared memory (or a mapped file),
/// visible to every process that opens it by name.
///
/// The segment is a valid `.npy` file, so numpy opens it too:
/// `numpy.load('/dev/shm/NAME', mmap_mode='r+')`.
///
/// **Lifetimes.** The handle returned by [`create`](Self::create) owns the
/// segment and removes its name when dropped (only if the name still leads
/// to this segment); handles from [`open`](Self::open) only unmap. An
/// attacher can never remove a segment others still use.
/// [`persist`](Self::persist) keeps a segment past its owner;
/// [`admin::remove`](crate::admin::remove) removes it later.
///
/// **Concurrency.** Views borrow the handle, so one handle cannot alias a
/// mutable view. Other processes may write the same memory at any time:
/// give each one its own rows (see [`rows_mut`](Self::rows_mut)) or
/// coordinate, just as with numpy.
///
/// ```
/// use shmkit::SharedArray;
/// # let name = format!("shmkit-doc-array-{}", std::process::id());
/// let mut a = SharedArray::<f64, _>::create(&name, (2, 3))?;
/// a.view_mut()?.fill(1.5);
///
/// let b = SharedArray::<f64, ndarray::Ix2>::open(&name)?; // by name alone
/// assert_eq!(b.view()?.sum(), 9.0);
/// drop(b); // unmaps
/// drop(a); // unmaps and removes the name
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct SharedArray<T: Element, D: Dimension = IxDyn> {
    seg: Segment,
    dim: D,
    fortran: bool,
    claims: Claims,
    _elem: PhantomData<T>,
}

impl<T: Element, D: Dimension> SharedArray<T, D> {
    /// Creates segment `name` holding a zeroed array of `shape`, owned by
    /// the returned handle.
    ///
    /// Pages are reserved now, so a full `/dev/shm` is [`Error::NoSpace`]
    /// here rather than SIGBUS later. The segment gets its name only once
    /// complete, so a crash here leaves nothing behind. Fails with
    /// [`Error::AlreadyExists`] if the name is taken.
    pub fn create<Sh: IntoDimension<Dim = D>>(name: &str, shape: Sh) -> Result<Self> {
        Self::create_with(name, shape.into_dimension(), |_| {})
    }

    /// Like [`create`](Self::create), under a fresh unique name (see [`name`](Self::name)).
    pub fn create_unique<Sh: IntoDimension<Dim = D>>(shape: Sh) -> Result<Self> {
        let dim = shape.into_dimension();
        name::retry_unique(|n| Self::create(n, dim.clone()))
    }

    /// Creates segment `name` holding a copy of `array`, copied before the
    /// name appears: no other process ever sees it half-filled.
    pub fn create_from<S: Data<Elem = T>>(name: &str, array: &ArrayBase<S, D>) -> Result<Self> {
        Self::create_with(name, array.raw_dim(), |mut v| v.assign(array))
    }

    /// Creates segment `name` holding an array of `shape` that `fill`
    /// writes in place before the name appears: no other process can see
    /// it half-filled, and no private copy is made.
    ///
    /// ```
    /// # let name = format!("shmkit-doc-create-with-{}", std::process::id());
    /// let a = shmkit::SharedArray::<u32, _>::create_with(&name, 4, |mut v| {
    ///     v.iter_mut().enumerate().for_each(|(i, x)| *x = i as u32 * 10)
    /// })?;
    /// assert_eq!(*a.as_slice()?, [0, 10, 20, 30]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_with<Sh: IntoDimension<Dim = D>>(
        name: &str,
        shape: Sh,
        fill: impl FnOnce(ArrayViewMut<'_, T, D>),
    ) -> Result<Self> {
        let dim = shape.into_dimension();
        let (header, data_len) = Self::header_for(&dim)?;
        let seg = Segment::create(name, SegmentKind::Array, &header, data_len, |seg| {
            // SAFETY: the segment has no name yet, so no other handle in any
            // process maps it; its data is `data_len` bytes, 64-aligned, the
            // size of `dim` elements of T.
            fill(unsafe { ArrayViewMut::from_shape_ptr(dim.clone(), seg.data_ptr().cast::<T>()) });
            Ok(())
        })?;
        Ok(SharedArray { seg, dim, fortran: false, claims: Claims::default(), _elem: PhantomData })
    }

    /// Creates segment `name` holding a zeroed array of `shape` whose data
    /// pages are not reserved yet: each process that will use it reserves
    /// its own rows with [`reserve_rows`](Self::reserve_rows) before it
    /// touches them, all at once (a node's ranks, each its own rows).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn create_sparse<Sh: IntoDimension<Dim = D>>(name: &str, shape: Sh) -> Result<Self> {
        let dim = shape.into_dimension();
        let (header, data_len) = Self::header_for(&dim)?;
        let seg = Segment::create_sparse(name, SegmentKind::Array, &header, data_len, |_| Ok(()))?;
        Ok(SharedArray { seg, dim, fortran: false, claims: Claims::default(), _elem: PhantomData })
    }

    /// Reserves the pages of rows `rows` (first axis) and maps them in
    /// this process (see [`create_sparse`](Self::create_sparse)).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn reserve_rows(&self, rows: Range<usize>) -> Result<()> {
        self.check_rows(&rows)?;
        let bytes = self.row_bytes(&rows); // a sparse array is in C order
        self.seg.reserve_data(bytes.start, bytes.len())
    }

    /// Opens segment `name` by name alone; kind, dtype and dimensionality
    /// are read from the segment and checked against `T` and `D`.
    ///
    /// The handle does not own the segment: dropping it only unmaps.
    pub fn open(name: &str) -> Result<Self> {
        Self::from_segment(Segment::open(name, SegmentKind::Array)?)
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
        let seg = Segment::create_file(path.as_ref(), &header, data_len, |_| Ok(()))?;
        Ok(SharedArray { seg, dim, fortran: false, claims: Claims::default(), _elem: PhantomData })
    }

    /// Opens the `.npy` file `path` read-write, checking dtype and dimensionality.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_segment(Segment::open_file(path.as_ref())?)
    }

    fn header_for(dim: &D) -> Result<(Vec<u8>, usize)> {
        let overflow = || Error::SizeOverflow { shape: dim.slice().to_vec(), itemsize: size_of::<T>() };
        let data_len = data_len(dim.slice(), size_of::<T>()).ok_or_else(overflow)?;
        let header = Header::encode(T::DTYPE, dim.slice(), false);
        crate::segment::segment_len(header.len(), data_len).ok_or_else(overflow)?;
        Ok((header, data_len))
    }

    /// Checks an opened segment's header against `T` and `D`.
    fn from_segment(seg: Segment) -> Result<Self> {
        let header = seg.layout().header.clone().expect("array segments have a .npy header");
        let name = seg.name();
        if crate::DType::from_descr(&header.descr) != Some(T::DTYPE) {
            return Err(Error::WrongDtype { name: name.to_owned(), expected: T::DTYPE.descr(), found: header.descr });
        }
        let dim = D::from_dimension(&IxDyn(&header.shape)).ok_or_else(|| Error::WrongNdim {
            name: name.to_owned(),
            expected: D::NDIM.unwrap_or(0),
            found: header.shape.len(),
        })?;
        if header.data_offset % align_of::<T>() != 0 {
            let why = format!("data offset {} is not aligned for {}", header.data_offset, T::DTYPE);
            return Err(Error::bad_header(name, why));
        }
        Ok(SharedArray { seg, dim, fortran: header.fortran, claims: Claims::default(), _elem: PhantomData })
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

    /// A read-only view of the whole array, claimed shared: it fails with
    /// [`Error::Busy`] while a mutable view of any of its bytes exists,
    /// through any handle in any process.
    pub fn view(&self) -> Result<View<'_, T, D>> {
        let claim = self.claims.take(&self.seg, self.all_bytes(), true, &"a view of the whole array")?;
        // SAFETY: the layout was validated (len elements of T at an aligned,
        // in-bounds offset); the claim just taken keeps every mutable shmkit
        // view of these bytes away while this view lives.
        Ok(View { view: unsafe { self.view_unchecked() }, _claim: claim })
    }

    /// A mutable view of the whole array, claimed exclusively: it fails
    /// with [`Error::Busy`] while any other view of its bytes exists,
    /// through any handle in any process.
    pub fn view_mut(&mut self) -> Result<ViewMut<'_, T, D>> {
        let claim = self.claims.take(&self.seg, self.all_bytes(), false, &"a mutable view of the whole array")?;
        // SAFETY: as in `view`; the exclusive claim just taken keeps every
        // other shmkit view of these bytes away while this one lives.
        Ok(ViewMut { view: unsafe { self.view_mut_unchecked() }, _claim: claim })
    }

    /// A view of rows `range` along the first axis: a helper's share. It
    /// claims only those rows (all of them for a Fortran-order array).
    pub fn rows(&self, range: Range<usize>) -> Result<View<'_, T, D>> {
        let slice = self.check_rows(&range)?;
        let claim =
            self.claims.take(&self.seg, self.row_bytes(&range), true, &format_args!("a view of rows {range:?}"))?;
        // SAFETY: as in `view`; the claim covers every byte of these rows.
        let view = unsafe { self.view_unchecked() }.slice_axis_move(Axis(0), slice);
        Ok(View { view, _claim: claim })
    }

    /// A mutable view of rows `range` along the first axis. Processes that
    /// each take disjoint rows can write at once without locks; overlapping
    /// rows are [`Error::Busy`].
    pub fn rows_mut(&mut self, range: Range<usize>) -> Result<ViewMut<'_, T, D>> {
        let slice = self.check_rows(&range)?;
        let claim = self.claims.take(
            &self.seg,
            self.row_bytes(&range),
            false,
            &format_args!("a mutable view of rows {range:?}"),
        )?;
        // SAFETY: as in `view_mut`; the exclusive claim covers these rows.
        let view = unsafe { self.view_mut_unchecked() }.slice_axis_move(Axis(0), slice);
        Ok(ViewMut { view, _claim: claim })
    }

    /// A view of rows `range` that claims nothing (a pool pass, whose
    /// coordinator holds the claim for every row).
    ///
    /// # Safety
    ///
    /// As [`view_unchecked`](Self::view_unchecked), for these rows.
    pub(crate) unsafe fn rows_unchecked(&self, range: Range<usize>) -> Result<ArrayView<'_, T, D>> {
        let slice = self.check_rows(&range)?;
        // SAFETY: the caller's promise, for these rows.
        Ok(unsafe { self.view_unchecked() }.slice_axis_move(Axis(0), slice))
    }

    /// A mutable view of rows `range` that claims nothing (a pool pass,
    /// whose coordinator holds the claim for every row).
    ///
    /// # Safety
    ///
    /// As [`view_mut_unchecked`](Self::view_mut_unchecked), for these rows.
    pub(crate) unsafe fn rows_mut_unchecked(&mut self, range: Range<usize>) -> Result<ArrayViewMut<'_, T, D>> {
        let slice = self.check_rows(&range)?;
        // SAFETY: the caller's promise, for these rows.
        Ok(unsafe { self.view_mut_unchecked() }.slice_axis_move(Axis(0), slice))
    }

    /// Claims every byte for the length of a pool pass: exclusively for a
    /// pass that writes, shared for one that reads. [`Error::Busy`] if
    /// another view of them is live anywhere.
    pub(crate) fn claim_all(&self, exclusive: bool) -> Result<Claim<'_>> {
        let what = if exclusive { "an in-place pass over every row" } else { "a pass reading every row" };
        self.claims.take(&self.seg, self.all_bytes(), !exclusive, &what)
    }

    /// Claims rows `range`, exclusively or shared, for code that makes its
    /// own views of them while the claim lives (an MPI sweep holds its
    /// rows' claims across all its steps). [`Error::Busy`] if a view that
    /// conflicts is live anywhere.
    #[cfg(feature = "mpi")]
    pub(crate) fn claim_rows(&self, range: Range<usize>, exclusive: bool) -> Result<Claim<'_>> {
        self.check_rows(&range)?;
        let what = format_args!("rows {range:?} for a sweep");
        self.claims.take(&self.seg, self.row_bytes(&range), !exclusive, &what)
    }

    fn check_rows(&self, range: &Range<usize>) -> Result<Slice> {
        let len = self.shape().first().copied().unwrap_or(0);
        if range.start > range.end || range.end > len || self.dim.ndim() == 0 {
            return Err(Error::OutOfRange { start: range.start, end: range.end, len });
        }
        Ok(Slice::from(range.clone()))
    }

    /// All elements in memory order, read-only (claimed shared).
    pub fn as_slice(&self) -> Result<SliceRef<'_, T>> {
        let claim = self.claims.take(&self.seg, self.all_bytes(), true, &"a view of the whole array")?;
        // SAFETY: as in `view`: len elements of T at an aligned, in-bounds
        // offset, claimed for as long as the slice lives.
        let slice = unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) };
        Ok(SliceRef { slice, _claim: claim })
    }

    /// All elements in memory order, mutable (claimed exclusively).
    pub fn as_slice_mut(&mut self) -> Result<SliceMut<'_, T>> {
        let claim = self.claims.take(&self.seg, self.all_bytes(), false, &"a mutable view of the whole array")?;
        // SAFETY: as in `as_slice`, claimed exclusively.
        let slice = unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len()) };
        Ok(SliceMut { slice, _claim: claim })
    }

    /// A view of the whole array that claims nothing.
    ///
    /// # Safety
    ///
    /// While the view lives, no one may write the elements it covers: no
    /// mutable view through another handle or in another process (shmkit's
    /// claims would refuse one; this view takes none, so the check is
    /// yours), and no other program (numpy, say) mapping the segment.
    pub unsafe fn view_unchecked(&self) -> ArrayView<'_, T, D> {
        // SAFETY: the layout was validated (offset + len * size_of::<T>() inside
        // the mapping, offset aligned for T); the view borrows self, so the
        // mapping outlives it; no concurrent writes is the caller's promise.
        unsafe { ArrayView::from_shape_ptr(self.dim.clone().set_f(self.fortran), self.as_ptr()) }
    }

    /// A mutable view of the whole array that claims nothing.
    ///
    /// # Safety
    ///
    /// While the view lives, no one else may read or write the elements it
    /// covers: no other view through this or another handle, in this or
    /// another process, and no other program mapping the segment.
    #[allow(clippy::mut_from_ref)] // the caller promises exclusivity, as with memmap2's map_mut
    pub unsafe fn view_mut_unchecked(&self) -> ArrayViewMut<'_, T, D> {
        // SAFETY: as in `view_unchecked`; exclusivity is the caller's promise.
        unsafe { ArrayViewMut::from_shape_ptr(self.dim.clone().set_f(self.fortran), self.as_ptr()) }
    }

    /// The first element, for code that manages access itself; reading or
    /// writing through it is `unsafe` and unchecked (see [`view_unchecked`](Self::view_unchecked)).
    pub fn as_ptr(&self) -> *mut T {
        debug_assert!(self.len() * size_of::<T>() <= self.seg.data_len());
        self.seg.data_ptr().cast()
    }

    /// Every byte of the data.
    fn all_bytes(&self) -> Range<usize> {
        0..self.len() * size_of::<T>()
    }

    /// What views of rows `range` claim. Claims are tokens checked among
    /// views, not memory protection, so rows map to bytes as in C order
    /// whatever the layout: distinct rows are distinct elements in Fortran
    /// order too (interleaved, not contiguous), so their claims must not
    /// conflict, and any claim of the whole array covers them all.
    fn row_bytes(&self, range: &Range<usize>) -> Range<usize> {
        let row = self.shape()[1..].iter().product::<usize>() * size_of::<T>();
        range.start * row..range.end * row
    }

    /// Writes a file-backed array's changes to disk (`msync(2)`); for a
    /// segment, a no-op that always succeeds.
    pub fn flush(&self) -> Result<()> {
        self.seg.flush()
    }

    /// This array with a dynamic number of dimensions.
    pub fn into_dyn(self) -> SharedArray<T, IxDyn> {
        let SharedArray { seg, dim, fortran, claims, .. } = self;
        SharedArray { seg, dim: dim.into_dyn(), fortran, claims, _elem: PhantomData }
    }

    /// Device and inode of the segment or file: its identity, unlike its name.
    pub(crate) fn id(&self) -> FileId {
        self.seg.id()
    }

    /// Maps every page of the array into this process now, in one call
    /// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+; a no-op before),
    /// instead of one page fault per page on first use.
    ///
    /// Costs one pass of page-table work up front; passes over the array
    /// afterwards skip their page faults. Pool helpers do this when they
    /// first attach.
    pub fn populate(&self) {
        self.seg.populate();
    }

    /// True once the segment's name has been removed.
    pub(crate) fn is_unlinked(&self) -> bool {
        self.seg.is_unlinked()
    }

    /// True for a file-backed array.
    pub(crate) fn is_file(&self) -> bool {
        self.seg.is_file()
    }

    /// Header, creator and flags of this array, read now.
    pub fn info(&self) -> Result<SegmentInfo> {
        self.seg.info()
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[T: Element, D: Dimension] SharedArray<T, D>);

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
