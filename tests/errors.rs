//! Every bad input gives its own typed error: no panic, no crash, no leak.

mod common;

use common::{shm_exists, unique, ShmFile};
use ndarray::{Ix1, Ix2, IxDyn};
use shmkit::{Error, SharedArray};

/// The bytes of a real shmkit segment named `name` holding 2x3 f64.
fn segment_bytes(name: &str) -> Vec<u8> {
    let _a = SharedArray::<f64, Ix2>::create(name, (2, 3)).unwrap();
    std::fs::read(format!("/dev/shm/{name}")).unwrap()
}

/// A `.npy` header with `dict` as its text, 64-aligned, then `data` bytes.
fn npy_with_dict(dict: &str, data: usize) -> Vec<u8> {
    let mut text = dict.to_owned();
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(text.len() as u16).to_le_bytes());
    b.extend_from_slice(text.as_bytes());
    b.resize(b.len() + data, 0);
    b
}

#[test]
fn missing_segment_is_not_found() {
    let err = SharedArray::<f64, Ix1>::open(&unique("missing")).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(matches!(shmkit::admin::inspect(&unique("missing")), Err(Error::NotFound { .. })));
}

#[test]
fn wrong_dtype_names_both_types() {
    let name = unique("dtype");
    let _a = SharedArray::<f64, Ix1>::create(&name, 4).unwrap();
    let err = SharedArray::<f32, Ix1>::open(&name).unwrap_err();
    assert!(matches!(&err, Error::WrongDtype { expected: "<f4", found, .. } if found == "<f8"), "{err}");
    assert!(err.to_string().contains("'<f8'"));
    assert!(matches!(SharedArray::<i64, Ix1>::open(&name), Err(Error::WrongDtype { .. })));
}

#[test]
fn wrong_ndim_is_its_own_error() {
    let name = unique("ndim");
    let _a = SharedArray::<u8, Ix2>::create(&name, (2, 2)).unwrap();
    let err = SharedArray::<u8, Ix1>::open(&name).unwrap_err();
    assert!(matches!(err, Error::WrongNdim { expected: 1, found: 2, .. }), "{err}");
}

#[test]
fn existing_name_is_already_exists() {
    let name = unique("exists");
    let _a = SharedArray::<u8, Ix1>::create(&name, 1).unwrap();
    assert!(matches!(SharedArray::<u8, Ix1>::create(&name, 1), Err(Error::AlreadyExists { .. })));
    let _raw = ShmFile::with_bytes(&unique("exists-raw"), b"x");
    assert!(matches!(SharedArray::<u8, Ix1>::create(&_raw.0, 1), Err(Error::AlreadyExists { .. })));
}

#[test]
fn segment_too_small_for_its_header() {
    let raw = ShmFile::with_bytes(&unique("tiny"), b"\x93NUM");
    assert!(matches!(SharedArray::<f64, IxDyn>::open(&raw.0), Err(Error::TooSmall { len: 4, needed: 10, .. })));
    let empty = ShmFile::with_bytes(&unique("zero"), b"");
    assert!(matches!(SharedArray::<f64, IxDyn>::open(&empty.0), Err(Error::TooSmall { len: 0, .. })));
}

#[test]
fn truncated_header_and_truncated_data_are_too_small() {
    let name = unique("trunc");
    let bytes = segment_bytes(&name);
    let head = ShmFile::with_bytes(&name, &bytes[..40]);
    assert!(matches!(SharedArray::<f64, Ix2>::open(&head.0), Err(Error::TooSmall { len: 40, needed: 128, .. })));
    let data = ShmFile::with_bytes(&unique("trunc-data"), &bytes[..128 + 20]);
    let err = SharedArray::<f64, Ix2>::open(&data.0).unwrap_err();
    assert!(matches!(err, Error::TooSmall { len: 148, needed: 176, .. }), "{err}");
}

#[test]
fn garbage_header_is_bad_header() {
    for dict in [
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3}",
        "{'descr': '<f8', 'shape': (2,)}",
        "not a dict at all",
    ] {
        let raw = ShmFile::with_bytes(&unique("garbage"), &npy_with_dict(dict, 64));
        let err = SharedArray::<f64, IxDyn>::open(&raw.0).unwrap_err();
        assert!(matches!(err, Error::BadHeader { .. }), "{dict}: {err}");
    }
    let mut bytes = segment_bytes(&unique("version"));
    bytes[6] = 9;
    let raw = ShmFile::with_bytes(&unique("version"), &bytes);
    let err = SharedArray::<f64, Ix2>::open(&raw.0).unwrap_err();
    assert!(matches!(&err, Error::BadHeader { reason, .. } if reason.contains("version 9")), "{err}");
}

#[test]
fn corrupted_trailer_is_bad_header() {
    let name = unique("trailer");
    let mut bytes = segment_bytes(&name);
    let at = bytes.len() - 64 + 40; // the data length the trailer records
    bytes[at] ^= 0xff;
    let raw = ShmFile::with_bytes(&name, &bytes);
    let err = SharedArray::<f64, Ix2>::open(&raw.0).unwrap_err();
    assert!(matches!(&err, Error::BadHeader { reason, .. } if reason.contains("trailer")), "{err}");
}

#[test]
fn header_whose_shape_overflows_is_bad_header() {
    let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615, 4), }";
    let raw = ShmFile::with_bytes(&unique("hugeshape"), &npy_with_dict(dict, 64));
    let err = SharedArray::<f64, IxDyn>::open(&raw.0).unwrap_err();
    assert!(matches!(&err, Error::BadHeader { reason, .. } if reason.contains("overflows")), "{err}");
}

#[test]
fn a_shape_that_overflows_past_a_zero_axis_is_refused_both_ways() {
    // Empty, yet ndarray refuses it: its non-zero axes pass isize::MAX bytes.
    let name = unique("zero-axis");
    let err = SharedArray::<f64, _>::create(&name, (0, usize::MAX / 16, 4)).unwrap_err();
    assert!(matches!(err, Error::SizeOverflow { itemsize: 8, .. }), "{err}");
    assert!(!shm_exists(&name));
    let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': (0, {}, 4), }}", usize::MAX / 16);
    let raw = ShmFile::with_bytes(&unique("zero-axis-header"), &npy_with_dict(&dict, 64));
    let err = SharedArray::<f64, IxDyn>::open(&raw.0).unwrap_err();
    assert!(matches!(&err, Error::BadHeader { reason, .. } if reason.contains("overflows")), "{err}");
}

#[test]
fn unsupported_dtype_in_header_is_wrong_dtype() {
    let dict = "{'descr': '<U8', 'fortran_order': False, 'shape': (2,), }";
    let raw = ShmFile::with_bytes(&unique("unicode"), &npy_with_dict(dict, 64));
    assert!(matches!(SharedArray::<u8, Ix1>::open(&raw.0), Err(Error::WrongDtype { .. })));
    let dict = "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }";
    let raw = ShmFile::with_bytes(&unique("object"), &npy_with_dict(dict, 64));
    assert!(matches!(SharedArray::<u8, Ix1>::open(&raw.0), Err(Error::BadHeader { .. })));
    let dict = "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }";
    let raw = ShmFile::with_bytes(&unique("bigendian"), &npy_with_dict(dict, 64));
    let err = SharedArray::<f64, Ix1>::open(&raw.0).unwrap_err();
    assert!(matches!(&err, Error::WrongDtype { found, .. } if found == ">f8"), "{err}");
}

#[test]
fn segment_shmkit_did_not_create_is_not_an_array() {
    let raw = ShmFile::with_bytes(&unique("foreign"), b"some other program's bytes, not an array");
    let err = SharedArray::<u8, Ix1>::open(&raw.0).unwrap_err();
    assert!(matches!(err, Error::NotAnArray { .. }), "{err}");
    let zeros = ShmFile::with_bytes(&unique("zeros"), &[0; 4096]);
    assert!(matches!(SharedArray::<u8, Ix1>::open(&zeros.0), Err(Error::NotAnArray { .. })));
}

#[test]
fn bad_names_are_rejected_before_any_syscall() {
    let long = "n".repeat(300);
    assert!(matches!(SharedArray::<u8, Ix1>::create(&long, 1), Err(Error::NameTooLong { len: 300, max: 255, .. })));
    for bad in ["", "a/b", "../etc", "sp ace", ".hidden", "shmkit-rm-00000000000000ff-0000abcd-data"] {
        let err = SharedArray::<u8, Ix1>::create(bad, 1).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
    }
    let err = SharedArray::<u8, Ix1>::open("/dev/shm/data").unwrap_err();
    assert!(err.to_string().contains("give the bare name"), "{err}");
}

#[test]
fn shape_whose_byte_size_overflows_is_size_overflow() {
    let name = unique("overflow");
    let err = SharedArray::<f64, Ix2>::create(&name, (usize::MAX / 2, 3)).unwrap_err();
    assert!(matches!(err, Error::SizeOverflow { itemsize: 8, .. }), "{err}");
    assert!(!shm_exists(&name));
}

#[test]
fn out_of_range_rows_are_refused() {
    let name = unique("range");
    let mut a = SharedArray::<i32, Ix2>::create(&name, (10, 2)).unwrap();
    assert!(matches!(a.rows(5..11), Err(Error::OutOfRange { start: 5, end: 11, len: 10 })));
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 7..3;
    assert!(matches!(a.rows_mut(reversed), Err(Error::OutOfRange { .. })));
    assert_eq!(a.rows(10..10).unwrap().len(), 0);
}

#[test]
fn full_dev_shm_is_no_space_at_create_and_leaves_nothing() {
    let total = rustix::fs::statvfs("/dev/shm").map(|s| s.f_blocks * s.f_frsize).unwrap();
    let name = unique("nospace");
    let elems = (total / 8 * 2) as usize; // twice the whole filesystem
    let err = SharedArray::<f64, Ix1>::create(&name, elems).unwrap_err();
    assert!(matches!(err, Error::NoSpace { requested, .. } if requested > total), "{err}");
    assert!(err.to_string().contains("not enough space"));
    assert!(!shm_exists(&name), "a failed create left its segment behind");
}

#[test]
fn a_header_nested_five_thousand_deep_is_refused_without_crashing() {
    // Found by review: a recursive parser would overflow its stack here,
    // and `shmkit ls` reads every entry of a world-writable /dev/shm.
    let dict = format!("{}1{}", "(".repeat(4_900), ")".repeat(4_900));
    let raw = ShmFile::with_bytes(&unique("deep"), &npy_with_dict(&dict, 64));
    // Half the 2 MiB a spawned thread gets by default: the parser stops at
    // Python's 200 levels, which fit in it even in a debug build.
    let err = std::thread::Builder::new()
        .stack_size(1024 << 10)
        .spawn(move || SharedArray::<f64, IxDyn>::open(&raw.0).unwrap_err())
        .unwrap()
        .join()
        .expect("no stack overflow");
    assert!(matches!(&err, Error::BadHeader { reason, .. } if reason.contains("nested")), "{err}");
}

#[test]
fn a_lock_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let m = shmkit::sync::ShmMutex::create(&unique("chmod"), 0u64).unwrap();
    let path = format!("/dev/shm/{}", m.name());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = shmkit::sync::ShmMutex::<u64>::open(m.name()).err().expect("refused");
    assert!(matches!(&err, Error::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("mode 666"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(shmkit::sync::ShmMutex::<u64>::open(m.name()).is_ok());
}

#[test]
fn persist_may_be_called_again_and_on_files() {
    let name = unique("persist-twice");
    let _file = ShmFile(name.clone());
    let a = SharedArray::<u8, Ix1>::create(&name, 4).unwrap();
    a.persist().unwrap();
    a.persist().expect("a second persist by the creator is harmless");
    drop(a);
    assert!(shmkit::admin::inspect(&name).unwrap().persistent);
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.npy", unique("persist-file")));
    let f = SharedArray::<u8, Ix1>::create_file(&path, 4).unwrap();
    f.persist().expect("a file is never removed by shmkit: nothing to do");
    drop(f);
    assert!(path.exists());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn only_the_creating_handle_may_persist_or_remove() {
    let name = unique("persist-owner");
    let owner = SharedArray::<u8, Ix1>::create(&name, 4).unwrap();
    let attached = SharedArray::<u8, Ix1>::open(&name).unwrap();
    assert!(matches!(attached.persist(), Err(Error::NotOwner { .. })));
    assert!(matches!(attached.remove_name(), Err(Error::NotOwner { .. })));
    assert!(!shmkit::admin::inspect(&name).unwrap().persistent);
    owner.persist().unwrap();
    drop(owner);
    assert!(shm_exists(&name));
    shmkit::admin::remove(&name).unwrap();
    assert!(!shm_exists(&name));
}

#[test]
fn a_segment_of_an_older_shmkit_is_named_as_such_and_removable() {
    let mut bytes = segment_bytes(&unique("v1"));
    let at = bytes.len() - 64;
    bytes[at + 7] = 1; // magic "SHMKIT\0\x01" and
    bytes[at + 8..at + 12].copy_from_slice(&1u32.to_le_bytes()); // layout 1: the previous release's
    let raw = ShmFile::with_bytes(&unique("v1"), &bytes);
    let err = SharedArray::<f64, Ix2>::open(&raw.0).unwrap_err();
    assert!(matches!(err, Error::OlderVersion { version: 1, .. }), "{err}");
    assert!(err.to_string().contains("shmkit rm"));
    shmkit::admin::remove(&raw.0).unwrap();
    assert!(!shm_exists(&raw.0));
    let foreign = ShmFile::with_bytes(&unique("not-ours"), b"some other program's bytes");
    assert!(matches!(shmkit::admin::remove(&foreign.0), Err(Error::NotAnArray { .. })), "remove touches shmkit's only");
    assert!(shm_exists(&foreign.0));
}

#[test]
fn remove_leaves_a_plain_npy_file_alone_and_says_how_to_remove_it() {
    let name = format!("{}.npy", unique("plain"));
    let _cleanup = ShmFile(name.clone());
    drop(SharedArray::<u8, Ix1>::create_file(format!("/dev/shm/{name}"), 4).unwrap()); // numpy's kind of file
    let err = shmkit::admin::remove(&name).unwrap_err();
    assert!(err.to_string().contains("shmkit rm --force"), "{err}");
    assert!(shm_exists(&name));
    shmkit::admin::unlink(&name).unwrap();
    assert!(!shm_exists(&name));
}
