//! The library's error type.
//!
//! One variant per thing a user can get wrong or run into, each with a
//! message that names the segment and says what to do about it.

use std::io;

use crate::kind::SegmentKind;

/// Everything that can go wrong creating, opening or viewing a shared array.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No segment (or file) by that name exists.
    #[error("no segment named '{name}' exists (was it created? its owner removes it when done, and gc when its creator dies)")]
    NotFound {
        /// The name or path that was looked up.
        name: String,
    },
    /// `create` found a segment of that name already there.
    #[error("a segment named '{name}' already exists{}", if *creator_gone { ", left by a creator that is gone (killed?): remove it with `shmkit gc` (or shmkit::admin::Gc), then create it again" } else { "; pick another name, or open it instead" })]
    AlreadyExists {
        /// The name that is taken.
        name: String,
        /// Its creator is gone: it is garbage a crashed run left.
        creator_gone: bool,
    },
    /// The name has characters or a form shmkit does not accept.
    #[error("invalid segment name '{name}': {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// The name is longer than the OS allows for a `/dev/shm` entry.
    #[error("segment name is {len} bytes long, the limit is {max}: '{name}'")]
    NameTooLong {
        /// The rejected name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The longest name allowed.
        max: usize,
    },
    /// The OS refused access to the segment.
    #[error("permission denied for '{name}' (shmkit segments have mode 0600, so only their creator's user may open them; a file needs read and write permission)")]
    PermissionDenied {
        /// The segment or file.
        name: String,
    },
    /// Not enough room in `/dev/shm` (or on the file's disk) to reserve the segment.
    #[error("not enough space for '{name}': {requested} bytes asked for, {available} free of {size} on its filesystem. Free leftovers with `shmkit gc`; enlarge /dev/shm (`mount -o remount,size=8G /dev/shm`; Docker: `docker run --shm-size=8g`; Kubernetes: an `emptyDir` volume with `medium: Memory` mounted at /dev/shm); or use a file-backed array. `shmkit doctor` shows the limits")]
    NoSpace {
        /// The segment or file.
        name: String,
        /// Bytes the segment needed.
        requested: u64,
        /// Bytes free when it was asked for.
        available: u64,
        /// The filesystem's size (`/dev/shm`'s, for a segment).
        size: u64,
    },
    /// This process has as many files open as its limit allows
    /// (`RLIMIT_NOFILE`): every open handle holds one.
    #[error("cannot open '{name}': this process has {open} files open, its limit (RLIMIT_NOFILE, `ulimit -n`) is {limit}. Close handles you no longer need, or raise the limit (`ulimit -n 65536`; systemd: `LimitNOFILE=`)")]
    TooManyFiles {
        /// The segment or file.
        name: String,
        /// Files open now.
        open: u64,
        /// The limit.
        limit: u64,
    },
    /// Mapping the segment failed for want of memory mappings: this process
    /// is at `vm.max_map_count` (every open handle holds a mapping), or out
    /// of address space.
    #[error("cannot map '{name}': this process has {mappings} memory mappings, the system limit (vm.max_map_count) is {limit}. Close handles you no longer need, or raise it (`sysctl -w vm.max_map_count=1048576`)")]
    TooManyMappings {
        /// The segment or file.
        name: String,
        /// Mappings this process has now.
        mappings: u64,
        /// `vm.max_map_count`.
        limit: u64,
    },
    /// The segment is shorter than its header says its data needs.
    #[error(
        "segment '{name}' is {len} bytes, too small: its header needs {needed} (truncated, or not a shmkit array)"
    )]
    TooSmall {
        /// The segment or file.
        name: String,
        /// Its length.
        len: u64,
        /// The length its header implies.
        needed: u64,
    },
    /// The segment is neither a `.npy` file nor a shmkit segment.
    #[error("segment '{name}' is neither a shmkit segment nor a .npy array; it was made by another program")]
    NotAnArray {
        /// The segment or file.
        name: String,
    },
    /// The `.npy` header could not be parsed or is inconsistent.
    #[error("segment '{name}' has a bad header: {reason}")]
    BadHeader {
        /// The segment or file.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The element type stored differs from the one asked for.
    #[error("segment '{name}' holds dtype '{found}', but it was opened as '{expected}'")]
    WrongDtype {
        /// The segment or file.
        name: String,
        /// The numpy dtype string of the requested element type.
        expected: &'static str,
        /// The dtype string found in the header.
        found: String,
    },
    /// The number of dimensions stored differs from the one asked for.
    #[error("segment '{name}' holds a {found}-d array, but it was opened as {expected}-d (open it as `SharedArray<_, IxDyn>` to accept any)")]
    WrongNdim {
        /// The segment or file.
        name: String,
        /// Dimensions requested.
        expected: usize,
        /// Dimensions found.
        found: usize,
    },
    /// The shape stored differs from the one the caller required.
    #[error("segment '{name}' has shape {found:?}, expected {expected:?}")]
    WrongShape {
        /// The segment or file.
        name: String,
        /// Shape required.
        expected: Vec<usize>,
        /// Shape found.
        found: Vec<usize>,
    },
    /// The array's size in bytes does not fit in memory addresses.
    #[error("shape {shape:?} of {itemsize}-byte elements overflows the address space")]
    SizeOverflow {
        /// The requested shape.
        shape: Vec<usize>,
        /// Bytes per element.
        itemsize: usize,
    },
    /// A range along the first axis reaches past its end.
    #[error("range {start}..{end} is out of bounds for an axis of length {len}")]
    OutOfRange {
        /// Start of the requested range.
        start: usize,
        /// End of the requested range.
        end: usize,
        /// Length of the axis.
        len: usize,
    },
    /// The segment holds another kind of object than the one asked for.
    #[error("segment '{name}' holds {}, but it was opened as {}", found.with_article(), expected.with_article())]
    WrongKind {
        /// The segment.
        name: String,
        /// The kind asked for.
        expected: SegmentKind,
        /// The kind found.
        found: SegmentKind,
    },
    /// A lock, queue or other primitive's segment that another user owns,
    /// or that others may write: its lock words would be trusted.
    #[error("refusing to open '{name}': {reason}. A primitive's memory holds words glibc follows as pointers, so it must be private to its user")]
    Untrusted {
        /// The segment.
        name: String,
        /// Who owns it and its mode.
        reason: String,
    },
    /// A segment made by an older shmkit, whose layout this one does not read.
    #[error("segment '{name}' was made by an older version of shmkit (layout {version}); remove it with `shmkit rm` once its programs are done")]
    OlderVersion {
        /// The segment.
        name: String,
        /// Its layout version.
        version: u32,
    },
    /// Only the handle that created a segment may remove it.
    #[error("this handle of '{name}' did not create it, so it may not remove it (use shmkit::unlink(name) to remove it anyway)")]
    NotOwner {
        /// The segment.
        name: String,
    },
    /// A handle made by another process and inherited across `fork`: the
    /// child shares its open file and the locks held through it, so it may
    /// not take views, slots or locks through it, nor remove the segment.
    #[error("this handle of '{name}' was made by process {maker} and inherited across fork: open '{name}' again by name in this process (a forked child shares its parent's open file and locks, so it may not take views or locks through it, nor remove the segment)")]
    Inherited {
        /// The segment.
        name: String,
        /// The process that made the handle.
        maker: u32,
    },
    /// The name now leads to a different segment than the one meant.
    #[error("the name '{name}' now leads to another segment: this one was removed and the name reused since")]
    Replaced {
        /// The segment or file.
        name: String,
    },
    /// A view conflicts with a live view of the same bytes made through
    /// another handle, in this or another process: a mutable view excludes
    /// every other view.
    #[error("segment '{name}': {what} conflicts with a live view of the same bytes (through another handle, in this or another process); drop that view first, or give each process its own rows")]
    Busy {
        /// The segment or file.
        name: String,
        /// Which view was asked for.
        what: String,
    },
    /// A lock, queue, map or list holds other types than the ones it was
    /// opened with (as numpy dtypes: `value <u8`, `key |S24, value <f8`).
    #[error(
        "{kind} '{name}' holds {found}, but it was opened with {expected}; open it with the types it was created with"
    )]
    WrongType {
        /// The segment.
        name: String,
        /// What it is.
        kind: SegmentKind,
        /// The types asked for, as numpy dtypes.
        expected: String,
        /// The types recorded in the segment.
        found: String,
    },
    /// Every place for a handle of this kind is taken (a queue's senders
    /// or receivers): drop one first.
    #[error("'{name}': {max} {what} are open already; drop one first")]
    TooManyHandles {
        /// The segment.
        name: String,
        /// Which handles (`"senders"`, `"receivers"`).
        what: &'static str,
        /// How many may be open at once.
        max: usize,
    },
    /// An argument is outside what the call accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An OS call failed in a way not covered above.
    #[error("{op} '{name}' failed: {source}")]
    Io {
        /// What was being done (`"shm_open"`, `"mmap"`, ...).
        op: &'static str,
        /// The segment or file.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Short for `std::result::Result<T, shmkit::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Maps an OS error from `op` on `name` to the most specific variant.
    pub(crate) fn from_io(op: &'static str, name: &str, source: io::Error) -> Error {
        let name = name.to_owned();
        match (source.kind(), source.raw_os_error()) {
            (io::ErrorKind::NotFound, _) => Error::NotFound { name },
            (io::ErrorKind::AlreadyExists, _) => Error::AlreadyExists { name, creator_gone: false },
            (io::ErrorKind::PermissionDenied, _) => Error::PermissionDenied { name },
            (_, Some(libc::EMFILE)) => {
                let limits = crate::os::limits();
                Error::TooManyFiles { name, open: limits.open_files, limit: limits.max_open_files }
            }
            (_, Some(libc::ENOMEM)) if op == "mmap" => {
                let limits = crate::os::limits();
                match limits.mappings + 64 >= limits.max_mappings {
                    true => Error::TooManyMappings { name, mappings: limits.mappings, limit: limits.max_mappings },
                    false => Error::Io { op, name, source },
                }
            }
            _ => Error::Io { op, name, source },
        }
    }

    /// `/dev/shm` itself could not be opened.
    pub(crate) fn shm_dir(source: io::Error) -> Error {
        Error::Io { op: "open (is /dev/shm a mounted tmpfs?)", name: "/dev/shm".into(), source }
    }

    /// A [`Error::BadHeader`] for `name`.
    pub(crate) fn bad_header(name: &str, reason: impl Into<String>) -> Error {
        Error::BadHeader { name: name.to_owned(), reason: reason.into() }
    }
}
