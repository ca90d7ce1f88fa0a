//! Segment names: what shmkit accepts, and unique names on demand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::os;
use crate::{Error, Result};

/// Checks the name of a segment about to be created: as [`validate`],
/// and at most [`os::CREATE_MAX`] bytes (room for the name its removal
/// takes).
pub(crate) fn validate_new(name: &str) -> Result<&str> {
    let bare = validate(name)?;
    if bare.len() > os::CREATE_MAX {
        return Err(Error::NameTooLong { name: name.to_owned(), len: bare.len(), max: os::CREATE_MAX });
    }
    if os::parse_aside(bare).is_some() {
        // gc would take it for a removal cut short, and finish it.
        return Err(Error::InvalidName {
            name: name.to_owned(),
            reason: "names like shmkit-rm-<16 hex digits>-<8 hex digits>-NAME mark removals in progress",
        });
    }
    Ok(bare)
}

/// Checks a segment name and returns it without a leading `/`.
///
/// The name is the `/dev/shm` entry itself (no hidden prefix), so Python's
/// `SharedMemory(name)` and `numpy.load('/dev/shm/' + name)` find it. A
/// leading `/`, as POSIX spells shm names, is accepted and dropped. The
/// rest must be 1 to 255 bytes of ASCII letters, digits, `_`, `-` and `.`,
/// not starting with `.`: no path tricks, no invisible entries.
pub(crate) fn validate(name: &str) -> Result<&str> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let invalid = |reason| Error::InvalidName { name: name.to_owned(), reason };
    if bare.is_empty() {
        return Err(invalid("it is empty"));
    }
    if bare.len() > os::NAME_MAX {
        return Err(Error::NameTooLong { name: name.to_owned(), len: bare.len(), max: os::NAME_MAX });
    }
    if bare.starts_with('.') {
        return Err(invalid("it starts with '.'"));
    }
    if let Some(inside) = bare.strip_prefix("dev/shm/") {
        return Err(Error::InvalidName {
            name: name.to_owned(),
            reason: if validate(inside).is_ok() {
                "it is a path: give the bare name, as in /dev/shm/NAME"
            } else {
                "it is a path"
            },
        });
    }
    if !bare.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')) {
        return Err(invalid("only ASCII letters, digits, '_', '-' and '.' are allowed"));
    }
    Ok(bare)
}

/// A fresh name, unique to this process and moment: `shmkit-PID-TIME-N`.
///
/// Creation still uses `O_EXCL`; callers retry on the (unlikely) clash.
pub(crate) fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("shmkit-{}-{nanos:08x}-{n}", os::current_pid())
}

/// Runs `make` with fresh unique names until one is free (`O_EXCL`
/// reports a clash as [`Error::AlreadyExists`]).
pub(crate) fn retry_unique<T>(mut make: impl FnMut(&str) -> Result<T>) -> Result<T> {
    loop {
        match make(&unique()) {
            Err(Error::AlreadyExists { .. }) => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_posix_names() {
        assert_eq!(validate("data_01.npy").unwrap(), "data_01.npy");
        assert_eq!(validate("/psm_abc").unwrap(), "psm_abc");
    }

    #[test]
    fn rejects_each_bad_form_with_its_own_error() {
        assert!(matches!(validate(""), Err(Error::InvalidName { reason: "it is empty", .. })));
        assert!(matches!(validate("a/b"), Err(Error::InvalidName { .. })));
        assert!(matches!(validate(".."), Err(Error::InvalidName { .. })));
        assert!(matches!(validate("tab\there"), Err(Error::InvalidName { .. })));
        let long = "x".repeat(256);
        assert!(matches!(validate(&long), Err(Error::NameTooLong { len: 256, max: 255, .. })));
        assert!(validate(&long[..255]).is_ok(), "an existing segment of any length opens");
        assert!(matches!(validate_new(&long[..255]), Err(Error::NameTooLong { max: 219, .. })));
        assert!(validate_new(&long[..219]).is_ok());
    }

    #[test]
    fn unique_names_differ_and_are_valid() {
        let (a, b) = (unique(), unique());
        assert_ne!(a, b);
        assert!(validate(&a).is_ok());
    }
}
