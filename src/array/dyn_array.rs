//! `DynArray`: an array whose dtype and rank are known at run time, the
//! face of arrays for bindings (Python, through numpy's array interface).
//! The same segments as [`SharedArray`](super::SharedArray), the same
//! lifetimes; claims are taken and released by number, so a handle may
//! hold any number of them (checked against each other here).

use std::fmt;
use std::ops::Range;
use std::path::Path;

use super::claim::ClaimSet;
use crate::kind::SegmentKind;
use crate::npy::dtype::DType;
use crate::npy::header::Header;
use crate::segment::info::SegmentInfo;
use crate::segment::{data_len, segment_len, Segment};
use crate::{name, Error, Result};

/// An n-dimensional array in a named segment (or `.npy` file) whose dtype
/// and shape are read from it at run time; its elements are reached
/// through [`data_ptr`](Self::data_ptr) (for numpy's array interface, say)
/// under claims taken with [`claim_rows`](Self::claim_rows).
///
/// ```
/// use shmkit::array::DynArray;
/// use shmkit::DType;
/// let a = DynArray::create_unique(DType::F32, &[4, 3])?;
/// let b = DynArray::open(a.name())?;
/// assert_eq!((b.dtype(), b.shape()), (DType::F32, &[4, 3][..]));
/// let mine = b.claim_rows(0..2, true)?;
/// assert!(a.claim_rows(1..3, false).is_err(), "rows 1..2 are claimed exclusively");
/// b.release(mine);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct DynArray {
    seg: Segment,
    dtype: DType,
    shape: Vec<usize>,
    fortran: bool,
    claims: ClaimSet,
}

impl DynArray {
    /// Creates segment `name` holding a zeroed array of `dtype` and `shape`.
    pub fn create(name: &str, dtype: DType, shape: &[usize]) -> Result<Self> {
        Self::create_with(name, dtype, shape, |_| {})
    }

    /// Like [`create`](Self::create), under a fresh unique name.
    pub fn create_unique(dtype: DType, shape: &[usize]) -> Result<Self> {
        name::retry_unique(|n| Self::create(n, dtype, shape))
    }

    /// Creates it with `fill` writing the data (as bytes, C order) before
    /// the name appears: no other process ever sees it half-filled.
    pub fn create_with(name: &str, dtype: DType, shape: &[usize], fill: impl FnOnce(&mut [u8])) -> Result<Self> {
        let (header, len) = Self::header_for(dtype, shape)?;
        let seg = Segment::create(name, SegmentKind::Array, &header, len, |seg| {
            // SAFETY: the segment has no name yet, so no other handle in any
            // process maps it; its data is `len` bytes at `data_ptr`.
            fill(unsafe { std::slice::from_raw_parts_mut(seg.data_ptr(), len) });
            Ok(())
        })?;
        Ok(Self::wrap(seg, dtype, shape.to_vec(), false))
    }

    /// Like [`create_with`](Self::create_with), under a fresh unique name
    /// (`fill` runs again if a name is taken at the last moment).
    pub fn create_unique_with(dtype: DType, shape: &[usize], mut fill: impl FnMut(&mut [u8])) -> Result<Self> {
        name::retry_unique(|n| Self::create_with(n, dtype, shape, &mut fill))
    }

    /// Creates the `.npy` file `path` (which must not exist) holding a
    /// zeroed array.
    pub fn create_file(path: impl AsRef<Path>, dtype: DType, shape: &[usize]) -> Result<Self> {
        let (header, len) = Self::header_for(dtype, shape)?;
        let seg = Segment::create_file(path.as_ref(), &header, len, |_| Ok(()))?;
        Ok(Self::wrap(seg, dtype, shape.to_vec(), false))
    }

    /// Opens segment `name`, whatever its dtype (one shmkit keeps:
    /// [`Error::WrongDtype`] names them otherwise) and rank.
    pub fn open(name: &str) -> Result<Self> {
        Self::from_segment(Segment::open(name, SegmentKind::Array)?)
    }

    /// Opens the `.npy` file `path` read-write.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_segment(Segment::open_file(path.as_ref())?)
    }

    fn header_for(dtype: DType, shape: &[usize]) -> Result<(Vec<u8>, usize)> {
        let overflow = || Error::SizeOverflow { shape: shape.to_vec(), itemsize: dtype.itemsize() };
        let len = data_len(shape, dtype.itemsize()).ok_or_else(overflow)?;
        let header = Header::encode(dtype, shape, false);
        segment_len(header.len(), len).ok_or_else(overflow)?;
        Ok((header, len))
    }

    fn from_segment(seg: Segment) -> Result<Self> {
        let header = seg.layout().header.clone().expect("array segments have a .npy header");
        let dtype = DType::from_descr(&header.descr).ok_or_else(|| Error::WrongDtype {
            name: seg.name().to_owned(),
            expected: DType::SUPPORTED,
            found: header.descr.clone(),
        })?;
        if header.data_offset % dtype.itemsize() != 0 {
            let why = format!("data offset {} is not aligned for {dtype}", header.data_offset);
            return Err(Error::bad_header(seg.name(), why));
        }
        Ok(Self::wrap(seg, dtype, header.shape, header.fortran))
    }

    fn wrap(seg: Segment, dtype: DType, shape: Vec<usize>, fortran: bool) -> Self {
        DynArray { seg, dtype, shape, fortran, claims: ClaimSet::default() }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Length of each axis.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// True if the data is in Fortran (column-major) order.
    pub fn is_fortran(&self) -> bool {
        self.fortran
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of data.
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype.itemsize()
    }

    /// The first byte of the data (aligned for the dtype). Reading or
    /// writing through it is up to the caller: shmkit checks nothing but
    /// the claims the caller takes.
    pub fn data_ptr(&self) -> *mut u8 {
        self.seg.data_ptr()
    }

    /// Claims rows `rows` (along the first axis, as
    /// [`SharedArray::rows`](super::SharedArray::rows) claims them) for
    /// reading (`exclusive` false) or writing; [`Error::Busy`] if any other
    /// claim of them conflicts, through this handle or any other in any
    /// process. Returns the claim's number for [`release`](Self::release).
    pub fn claim_rows(&self, rows: Range<usize>, exclusive: bool) -> Result<u64> {
        let len = self.shape.first().copied().unwrap_or(0);
        if rows.start > rows.end || rows.end > len || self.shape.is_empty() {
            return Err(Error::OutOfRange { start: rows.start, end: rows.end, len });
        }
        let row = self.shape[1..].iter().product::<usize>() * self.dtype.itemsize();
        let what = format!("{} of rows {rows:?}", if exclusive { "a mutable view" } else { "a view" });
        self.claims.take(&self.seg, rows.start * row..rows.end * row, exclusive, &what)
    }

    /// Claims every element (see [`claim_rows`](Self::claim_rows)); works
    /// for 0-d arrays too.
    pub fn claim_all(&self, exclusive: bool) -> Result<u64> {
        let what = if exclusive { "a mutable view of the whole array" } else { "a view of the whole array" };
        self.claims.take(&self.seg, 0..self.byte_len(), exclusive, &what)
    }

    /// Releases claim `id` (unknown ids are ignored).
    pub fn release(&self, id: u64) {
        self.claims.release(&self.seg, id);
    }

    /// Writes a file-backed array's changes to disk (`msync(2)`).
    pub fn flush(&self) -> Result<()> {
        self.seg.flush()
    }

    /// Maps every page into this process now (see [`SharedArray::populate`](super::SharedArray::populate)).
    pub fn populate(&self) {
        self.seg.populate();
    }

    /// Header, creator and flags, read now.
    pub fn info(&self) -> Result<SegmentInfo> {
        self.seg.info()
    }
}

crate::segment::lifetime_api!(|s| &s.seg; impl[] DynArray);

impl fmt::Debug for DynArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynArray")
            .field("name", &self.name())
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("owner", &self.is_owner())
            .finish()
    }
}
