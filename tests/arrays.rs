//! Shared arrays across real processes: attach by name, mutate in place,
//! lifetimes, persistence, file-backed arrays.

mod common;

use common::{child_arg, run_child, shm_exists, unique, ShmFile};
use ndarray::{array, Array2, Ix1, Ix2, IxDyn};
use shmkit::{Error, SharedArray};

#[test]
fn child_attaches_by_name_and_its_writes_are_seen() {
    let _w = common::Watchdog::new(std::time::Duration::from_secs(60));
    if let Some(name) = child_arg() {
        let mut a = SharedArray::<f64, Ix1>::open(&name).unwrap();
        assert!(!a.is_owner());
        a.rows_mut(0..500).unwrap().mapv_inplace(|x| 2.0 * x);
        return;
    }
    let name = unique("attach");
    let mut a = SharedArray::<f64, Ix1>::create(&name, 1000).unwrap();
    a.as_slice_mut().unwrap().iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
    assert!(run_child("child_attaches_by_name_and_its_writes_are_seen", &name).success());
    let expect = |i: usize| if i < 500 { 2.0 * i as f64 } else { i as f64 };
    assert!(a.as_slice().unwrap().iter().enumerate().all(|(i, &x)| x == expect(i)));
}

#[test]
fn owner_drop_unlinks_but_attacher_drop_does_not() {
    if let Some(name) = child_arg() {
        let a = SharedArray::<u8, IxDyn>::open(&name).unwrap();
        assert_eq!(a.shape(), &[4, 4]);
        drop(a);
        return;
    }
    let name = unique("lifetime");
    let owner = SharedArray::<u8, _>::create(&name, (4, 4)).unwrap();
    assert!(run_child("owner_drop_unlinks_but_attacher_drop_does_not", &name).success());
    assert!(shm_exists(&name), "a child's attacher handle removed the segment");
    drop(SharedArray::<u8, Ix2>::open(&name).unwrap());
    assert!(shm_exists(&name), "an attacher handle removed the segment");
    drop(owner);
    assert!(!shm_exists(&name), "the owner did not unlink on drop");
}

#[test]
fn attacher_cannot_unlink_and_owner_close_reports_errors() {
    let name = unique("close");
    let owner = SharedArray::<i64, Ix1>::create(&name, 8).unwrap();
    let attached = SharedArray::<i64, Ix1>::open(&name).unwrap();
    assert!(attached.remove_name().is_err());
    assert!(shm_exists(&name));
    shmkit::admin::unlink(&name).unwrap(); // someone else removes the name first
    assert!(matches!(owner.close(), Err(Error::NotFound { .. })));
    assert_eq!(attached.as_slice().unwrap().len(), 8, "mapping stays valid after unlink");
}

#[test]
fn persisted_segment_outlives_its_owner() {
    let _w = common::Watchdog::new(std::time::Duration::from_secs(60));
    if let Some(name) = child_arg() {
        let a = SharedArray::<f32, Ix2>::open(&name).unwrap();
        assert_eq!(*a.view().unwrap(), array![[1.0, 2.0], [3.0, 4.0]]);
        assert!(shmkit::admin::inspect(&name).unwrap().persistent);
        return;
    }
    let name = unique("persist");
    let a = SharedArray::create_from(&name, &array![[1.0f32, 2.0], [3.0, 4.0]]).unwrap();
    a.persist().unwrap();
    drop(a);
    let _cleanup = ShmFile(name.clone());
    assert!(run_child("persisted_segment_outlives_its_owner", &name).success());
    shmkit::admin::unlink(&name).unwrap();
    assert!(!shm_exists(&name));
}

#[test]
fn create_unique_names_are_usable_and_cleaned_up() {
    let a = SharedArray::<u16, Ix1>::create_unique(3).unwrap();
    let b = SharedArray::<u16, Ix1>::create_unique(3).unwrap();
    assert_ne!(a.name(), b.name());
    let name = a.name().to_owned();
    assert_eq!(SharedArray::<u16, Ix1>::open(&name).unwrap().len(), 3);
    drop(a);
    assert!(!shm_exists(&name));
}

#[test]
fn handles_are_send_and_sync_and_threads_split_rows() {
    let _w = common::Watchdog::new(std::time::Duration::from_secs(60));
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SharedArray<f64, Ix2>>();
    let name = unique("threads");
    let mut a = SharedArray::<u32, Ix2>::create(&name, (64, 16)).unwrap();
    let mut view = a.view_mut().unwrap();
    std::thread::scope(|s| {
        for (k, mut rows) in view.axis_chunks_iter_mut(ndarray::Axis(0), 16).enumerate() {
            s.spawn(move || rows.fill(k as u32 + 1));
        }
    });
    drop(view);
    assert_eq!(a.view().unwrap().sum(), 16 * 16 * (1 + 2 + 3 + 4));
}

#[test]
fn dynamic_open_accepts_any_rank() {
    let name = unique("dyn");
    let _a = SharedArray::<i16, _>::create(&name, (2, 3, 4)).unwrap();
    let d = SharedArray::<i16, IxDyn>::open(&name).unwrap();
    assert_eq!((d.shape(), d.len()), (&[2, 3, 4][..], 24));
    let shaped = SharedArray::<i16, _>::open_with_shape(&name, (2, 3, 4));
    assert!(shaped.is_ok());
    let wrong = SharedArray::<i16, _>::open_with_shape(&name, (2, 4, 3));
    assert!(
        matches!(wrong, Err(Error::WrongShape { expected, found, .. }) if expected == [2, 4, 3] && found == [2, 3, 4])
    );
}

#[test]
fn zero_sized_and_empty_arrays_work() {
    let (n0, n1) = (unique("scalar"), unique("empty"));
    let mut scalar = SharedArray::<f64, _>::create(&n0, ()).unwrap();
    scalar.view_mut().unwrap().fill(7.0);
    assert_eq!(SharedArray::<f64, ndarray::Ix0>::open(&n0).unwrap().view().unwrap()[()], 7.0);
    assert!(matches!(scalar.rows(0..0), Err(Error::OutOfRange { len: 0, .. })));
    let empty = SharedArray::<u8, _>::create(&n1, (0, 5)).unwrap();
    assert!(SharedArray::<u8, Ix2>::open(&n1).unwrap().is_empty());
    assert_eq!(empty.rows(0..0).unwrap().len(), 0);
}

#[test]
fn file_backed_arrays_share_the_api_and_persist() {
    let _w = common::Watchdog::new(std::time::Duration::from_secs(60));
    if let Some(path) = child_arg() {
        let mut f = SharedArray::<f64, Ix2>::open_file(&path).unwrap();
        f.rows_mut(1..2).unwrap().fill(-1.0);
        f.flush().unwrap();
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{}.npy", unique("file")));
    let data = Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f64);
    let mut f = SharedArray::<f64, Ix2>::create_file(&path, (3, 4)).unwrap();
    f.view_mut().unwrap().assign(&data);
    f.flush().unwrap();
    drop(f);
    assert!(matches!(SharedArray::<f64, Ix2>::create_file(&path, (2, 2)), Err(Error::AlreadyExists { .. })));
    assert!(run_child("file_backed_arrays_share_the_api_and_persist", path.to_str().unwrap()).success());
    let f = SharedArray::<f64, Ix2>::open_file(&path).unwrap();
    assert_eq!(*f.rows(0..1).unwrap(), data.slice(ndarray::s![0..1, ..]));
    assert!(f.rows(1..2).unwrap().iter().all(|&x| x == -1.0));
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    assert_eq!(len, f.info().unwrap().data_offset + 12 * 8, "files stay plain .npy, no trailer");
    std::fs::remove_file(&path).unwrap();
}

/// A `DynArray` handle may hold many claims at once (as Python holds
/// them): they are checked against each other, and releasing one leaves
/// the others' bytes locked, against other handles and processes.
#[test]
fn a_dyn_array_handle_keeps_each_claim_until_its_own_release() {
    use shmkit::array::DynArray;
    use shmkit::DType;
    let a = DynArray::create(&unique("dyn-claims"), DType::U16, &[10, 4]).unwrap();
    let b = DynArray::open(a.name()).unwrap();
    assert_eq!((b.dtype(), b.shape(), b.byte_len()), (DType::U16, &[10, 4][..], 80));
    let r1 = a.claim_rows(0..6, false).unwrap();
    let r2 = a.claim_rows(4..8, false).unwrap(); // overlapping shared claims of one handle
    assert!(matches!(a.claim_rows(5..6, true), Err(Error::Busy { .. })), "against the handle's own claims");
    a.release(r1);
    assert!(matches!(b.claim_rows(4..5, true), Err(Error::Busy { .. })), "rows 4..6 are still r2's");
    let w = b.claim_rows(0..4, true).expect("rows 0..4 were r1's alone");
    a.release(r2);
    let w2 = b.claim_rows(4..10, true).expect("all free now");
    b.release(w);
    b.release(w2);
    assert!(a.claim_all(true).is_ok());
}
