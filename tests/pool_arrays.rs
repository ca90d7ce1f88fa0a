//! Pool operations over shared arrays: in place, by rows, in helpers.

mod common;
#[path = "common/tasks.rs"]
mod tasks;

use std::time::Duration;

use common::{unique, Watchdog};
use ndarray::{Array2, Ix1, Ix2};
use shmkit::pool::{InPlaceError, PoolBuilder, ReduceError, TaskError};
use shmkit::{Pool, SharedArray};
use tasks::*;

fn pool(test: &str) -> PoolBuilder {
    Pool::builder().tasks(register).helpers(2).in_test(test)
}

#[test]
fn chunk_ops_mutate_in_place_and_reductions_agree() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("chunk_ops_mutate_in_place_and_reductions_agree").build().unwrap();
    let n = 100_003;
    let mut a = SharedArray::<f64, Ix1>::create(&unique("pool-1d"), n).unwrap();
    let mut chunks = 0;
    pool.batch().progress(|_, total| chunks = total).for_each_chunk_mut(&mut a, fill_index).unwrap();
    assert_eq!(chunks, 2, "auto chunking: under 2 MiB a chunk, one chunk per helper");
    let mut big = SharedArray::<f64, Ix1>::create(&unique("pool-1d-big"), 4_000_037).unwrap();
    pool.batch().progress(|_, total| chunks = total).for_each_chunk_mut(&mut big, double).unwrap();
    // Guided: each chunk a quarter (2 x helpers) of what is left, at least
    // 2 MiB: 8, 6, 4.5, 3.4, 2.5, then 2 MiB chunks and the rest.
    assert_eq!(chunks, 9, "guided chunking of 32 MiB");
    assert!(a.as_slice().unwrap().iter().enumerate().all(|(i, &x)| x == i as f64));
    pool.for_each_chunk_mut(&mut a, double).unwrap();
    assert!(a.as_slice().unwrap().iter().enumerate().all(|(i, &x)| x == 2.0 * i as f64));
    let expect_sum = (n * (n - 1)) as f64;
    assert_eq!(pool.sum(&a).unwrap(), expect_sum);
    assert_eq!(pool.batch().mean(&a).unwrap(), expect_sum / n as f64);
    assert_eq!(pool.batch().min(&a).unwrap(), Some(0.0));
    assert_eq!(pool.batch().max(&a).unwrap(), Some(2.0 * (n - 1) as f64));
    assert_eq!(pool.reduce(&a, count_rows, |x, y| x + y).unwrap(), n);
    let sq: f64 = a.as_slice().unwrap().iter().map(|x| x * x).sum();
    let got = pool.batch().chunksize(1000).reduce(&a, sum_of_squares, |x, y| x + y).unwrap();
    assert!((got - sq).abs() / sq < 1e-12);
}

#[test]
fn chunk_tasks_take_a_parameter_sent_with_every_chunk() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("chunk_tasks_take_a_parameter_sent_with_every_chunk").build().unwrap();
    let n = 50_001;
    let mut a = SharedArray::<f64, Ix1>::create(&unique("pool-with"), n).unwrap();
    a.as_slice_mut().unwrap().iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
    pool.batch().chunksize(777).for_each_chunk_mut_with(&mut a, scale, 0.5).unwrap();
    assert!(a.as_slice().unwrap().iter().enumerate().all(|(i, &x)| x == 0.5 * i as f64));
    let above = pool.batch().chunksize(1000).reduce_with(&a, count_above, 100.0, |x, y| x + y).unwrap();
    assert_eq!(above, (0..n).filter(|&i| 0.5 * i as f64 > 100.0).count());
    pool.for_each_chunk_mut_with(&mut a, scale, 4.0).unwrap();
    assert_eq!(pool.reduce_with(&a, count_above, -1.0, |x, y| x + y).unwrap(), n);
}

#[test]
fn integer_sums_are_exact_and_overflow_is_an_error() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("integer_sums_are_exact_and_overflow_is_an_error").build().unwrap();
    // 2^53 + 1 is the first integer an f64 sum would round away.
    let big = (1u64 << 53) + 1;
    let exact = SharedArray::create_from(&unique("sum-exact"), &ndarray::array![big, 0, 0, 2]).unwrap();
    assert_eq!(pool.sum(&exact).unwrap(), big + 2);
    let negative = SharedArray::create_from(&unique("sum-neg"), &ndarray::array![i64::MIN, i64::MAX, 1]).unwrap();
    assert_eq!(pool.sum(&negative).unwrap(), 0);
    assert_eq!(pool.mean(&negative).unwrap(), 0.0);
    let over = SharedArray::create_from(&unique("sum-over"), &ndarray::array![u64::MAX, 1]).unwrap();
    let err = pool.sum(&over).unwrap_err();
    assert!(matches!(err, shmkit::pool::ReduceError::Overflow { .. }), "{err:?}");
    assert!(err.to_string().contains("<u8"), "{err}");
    let small = SharedArray::create_from(&unique("sum-i8"), &ndarray::array![100i8, 100, 100]).unwrap();
    assert_eq!(pool.sum(&small).unwrap(), 300, "summed wider than the element, as numpy does");
    assert_eq!((pool.min(&small).unwrap(), pool.max(&small).unwrap()), (Some(100), Some(100)));
}

#[test]
fn two_d_arrays_are_split_by_rows() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("two_d_arrays_are_split_by_rows").build().unwrap();
    let data = Array2::from_shape_fn((100, 7), |(i, j)| (i * 7 + j) as f32);
    let mut a = SharedArray::create_from(&unique("pool-2d"), &data).unwrap();
    pool.batch().chunksize(9).for_each_chunk_mut(&mut a, triple_rows).unwrap();
    assert_eq!(*a.view().unwrap(), data.mapv(|x| 3.0 * x));
    assert_eq!(pool.batch().min(&a).unwrap(), Some(0.0));
    assert_eq!(pool.sum(&SharedArray::<u8, Ix2>::create(&unique("pool-u8"), (3, 3)).unwrap()).unwrap(), 0);
}

#[test]
fn a_failing_chunk_is_reported_after_the_others_finish() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_failing_chunk_is_reported_after_the_others_finish").build().unwrap();
    let mut a = SharedArray::<f64, Ix1>::create(&unique("pool-fail"), 1000).unwrap();
    let err = pool.batch().chunksize(100).for_each_chunk_mut(&mut a, panic_in_first_chunk).unwrap_err();
    let report = err.report().expect("an incomplete pass");
    assert!(
        matches!(&report.in_doubt[..], [(r, TaskError::Panicked(m))] if *r == (0..100) && m.contains("first chunk refuses")),
        "{err}"
    );
    assert_eq!(report.applied, vec![100..1000], "{err}"); // one range, rows 100 to 1000
    assert_eq!(pool.reduce(&a, count_rows, |x, y| x + y).unwrap(), 1000, "the pool still works");
}

#[test]
fn a_recreated_name_is_a_new_array_to_the_helpers() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_recreated_name_is_a_new_array_to_the_helpers").build().unwrap();
    let name = unique("pool-recreate");
    let mut a = SharedArray::<f64, Ix1>::create(&name, 1000).unwrap();
    a.as_slice_mut().unwrap().fill(1.0);
    assert_eq!(pool.sum(&a).unwrap(), 1000.0);
    drop(a);
    let mut b = SharedArray::<f64, Ix1>::create(&name, 1000).unwrap();
    b.as_slice_mut().unwrap().fill(5.0);
    assert_eq!(pool.sum(&b).unwrap(), 5000.0, "a helper read a stale mapping");
    pool.for_each_chunk_mut(&mut b, double).unwrap();
    assert!(b.as_slice().unwrap().iter().all(|&x| x == 10.0));
    // A helper that took no chunk of `b` (its peer took both, as a loaded
    // machine allows) lets go of `a` on its own when idle, not at once.
    let stale = format!("{name} (deleted)");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for pid in pool.helper_pids() {
        let keeps = || std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains(&stale));
        while keeps() {
            assert!(std::time::Instant::now() < deadline, "helper {pid} keeps the unlinked segment mapped");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn idle_helpers_let_go_of_an_array_removed_after_their_last_pass() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("idle_helpers_let_go_of_an_array_removed_after_their_last_pass").build().unwrap();
    let name = unique("pool-idle-unmap");
    let mut a = SharedArray::<f64, Ix1>::create(&name, 1 << 20).unwrap();
    pool.for_each_chunk_mut(&mut a, double).unwrap();
    // A helper that is gone maps nothing.
    let mapped =
        |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains(name.as_str()));
    assert!(pool.helper_pids().into_iter().any(mapped), "the pass mapped the array in a helper");
    // Its name removed, the array is refused at once: helpers find arrays
    // by name, and one that mapped it before lets it go.
    shmkit::admin::unlink(&name).unwrap();
    match pool.sum(&a) {
        Err(shmkit::pool::ReduceError::Busy(shmkit::Error::NotFound { .. })) => {}
        other => panic!("a pass over an array whose name is gone: {other:?}"),
    }
    drop(a);
    // No task comes: the helpers, idle, look for removed arrays on their own.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pool.helper_pids().into_iter().any(mapped) {
        assert!(std::time::Instant::now() < deadline, "an idle helper keeps a removed array mapped");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn file_backed_and_empty_arrays_work_too() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("file_backed_and_empty_arrays_work_too").build().unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.npy", unique("pool-file")));
    let mut f = SharedArray::<f64, Ix1>::create_file(&path, 5000).unwrap();
    pool.for_each_chunk_mut(&mut f, fill_index).unwrap();
    assert_eq!(pool.sum(&f).unwrap(), (5000 * 4999 / 2) as f64);
    std::fs::remove_file(&path).unwrap();
    let empty = SharedArray::<i32, Ix1>::create(&unique("pool-empty"), 0).unwrap();
    assert_eq!(pool.sum(&empty).unwrap(), 0);
    assert_eq!(pool.batch().max(&empty).unwrap(), None);
    assert!(pool.batch().mean(&empty).unwrap().is_nan());
}

/// A fresh tmpfs mounted for one test (root only: CI runs as root);
/// lazily unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(tag: &str) -> Tmpfs {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique(tag));
        std::fs::create_dir_all(&dir).unwrap();
        let status =
            std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"]).arg(&dir).status();
        assert!(status.is_ok_and(|s| s.success()), "mounting a tmpfs needs root: this test cannot run here");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn files_with_equal_inode_numbers_on_two_mounts_are_two_arrays_to_a_helper() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let (ma, mb) = (Tmpfs::mount("mount-a"), Tmpfs::mount("mount-b"));
    let mut a = SharedArray::<f64, Ix1>::create_file(ma.0.join("x.npy"), 1000).unwrap();
    let mut b = SharedArray::<f64, Ix1>::create_file(mb.0.join("y.npy"), 1000).unwrap();
    let ino = |p: std::path::PathBuf| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    assert_eq!(ino(ma.0.join("x.npy")), ino(mb.0.join("y.npy")), "fresh tmpfs mounts number inodes alike");
    let pool = Pool::builder()
        .tasks(register)
        .helpers(1)
        .in_test("files_with_equal_inode_numbers_on_two_mounts_are_two_arrays_to_a_helper")
        .build()
        .unwrap();
    pool.for_each_chunk_mut(&mut a, fill_index).unwrap();
    b.as_slice_mut().unwrap().fill(1.0);
    pool.for_each_chunk_mut(&mut b, double).unwrap();
    assert!(b.as_slice().unwrap().iter().all(|&x| x == 2.0), "the helper doubled another file than b");
    assert!(a.as_slice().unwrap().iter().enumerate().all(|(i, &x)| x == i as f64), "the helper wrote into a");
    drop(pool);
}

/// An in-place pass that meets a live view of some rows (here through
/// another handle; another process is the same to the kernel) fails before
/// touching anything: no half-normalised array.
#[test]
fn a_pass_that_meets_a_busy_row_range_changes_nothing() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = Pool::builder().tasks(register).helpers(2).build().unwrap();
    let mut a = SharedArray::<f64, Ix1>::create(&unique("pool-busy"), 4096).unwrap();
    a.as_slice_mut().unwrap().fill(1.0);
    let other = SharedArray::<f64, Ix1>::open(a.name()).unwrap();
    let reader = other.rows(0..10).unwrap();
    let err = pool.batch().chunksize(512).for_each_chunk_mut(&mut a, double).unwrap_err();
    assert!(matches!(&err, InPlaceError::Busy(shmkit::Error::Busy { .. })), "{err}");
    assert!(err.to_string().contains("changed nothing"), "{err}");
    drop(reader);
    assert!(a.as_slice().unwrap().iter().all(|&x| x == 1.0), "a row was changed");
    pool.for_each_chunk_mut(&mut a, double).unwrap();
    assert!(a.as_slice().unwrap().iter().all(|&x| x == 2.0));
}

/// A helper killed mid-pass: the error says exactly which rows were
/// applied, which were not, and which are in doubt; the values agree.
#[test]
fn a_helper_killed_mid_pass_names_the_rows_applied_and_in_doubt() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = Pool::builder().tasks(register).helpers(1).build().unwrap();
    let (a, done) = ones_doubled_in_chunks_of_100(&pool, "pool-died", double_or_die);
    let err = done.unwrap_err();
    let report = err.report().expect("an incomplete pass");
    assert_eq!(report.applied, [0..400, 500..1000], "{err}");
    assert!(report.not_applied.is_empty(), "{err}");
    assert!(
        matches!(&report.in_doubt[..], [(r, TaskError::WorkerDied { signal: Some(6), .. })] if *r == (400..500)),
        "{err}"
    );
    assert_applied_doubled(&a, report);
    assert!(err.to_string().contains("400..500 in doubt"), "{err}");
}

/// A helper whose chunk failed half-way and which then died: that chunk
/// is in doubt, not applied (its failure died with the helper), and the
/// chunks it finished before are applied.
#[test]
fn a_chunk_that_failed_before_its_helper_died_is_in_doubt() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = Pool::builder().tasks(register).helpers(1).build().unwrap();
    let (a, done) = ones_doubled_in_chunks_of_100(&pool, "pool-fail-die", double_panic_or_die);
    let err = done.unwrap_err();
    let report = err.report().expect("an incomplete pass");
    assert_eq!(report.applied, [0..100, 200..300, 400..1000], "{err}");
    let doubt: Vec<_> = report.in_doubt.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(doubt, [100..200, 300..400], "{err}");
    assert_applied_doubled(&a, report);
}

/// A helper killed as it claims its first chunk (before it touches a
/// row), and one killed as it finishes one (its result not yet sent):
/// the first chunk is in doubt, or applied, every other one runs on the
/// replacement, and a sum counts each chunk once (the chunk whose result
/// was lost runs again; the one killed at its claim, with a retry).
#[test]
fn a_helper_killed_as_it_claims_or_finishes_a_chunk_leaves_every_chunk_settled() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let at_claim = Pool::builder().tasks(register).helpers(1).env("SHMKIT_FAULT_INJECT", "helper-claimed").build();
    let (a, done) = ones_doubled_in_chunks_of_100(&at_claim.unwrap(), "pool-kill-claim", double);
    let err = done.unwrap_err();
    let report = err.report().expect("an incomplete pass");
    assert_eq!(report.applied, vec![100..1000], "{err}");
    assert!(
        matches!(&report.in_doubt[..], [(r, TaskError::WorkerDied { signal: Some(9), .. })] if *r == (0..100)),
        "{err}"
    );
    assert_applied_doubled(&a, report);
    assert!(a.as_slice().unwrap()[..100].iter().all(|&x| x == 1.0), "the claimed chunk was not begun");
    let at_end = Pool::builder().tasks(register).helpers(1).env("SHMKIT_FAULT_INJECT", "helper-finished-chunk");
    let at_end = at_end.build().unwrap();
    let (a, done) = ones_doubled_in_chunks_of_100(&at_end, "pool-kill-finished", double);
    assert!(done.is_ok(), "the finished chunk is applied, the rest ran on the replacement: {done:?}");
    assert!(a.as_slice().unwrap().iter().all(|&x| x == 2.0));
    assert_eq!(at_end.batch().chunksize(100).sum(&a).unwrap(), 2000.0, "the lost result ran again");
    let at_claim = Pool::builder().tasks(register).helpers(1).env("SHMKIT_FAULT_INJECT", "helper-claimed");
    let at_claim = at_claim.build().unwrap();
    assert_eq!(at_claim.batch().chunksize(100).retries(1).sum(&a).unwrap(), 2000.0);
    match at_claim.batch().chunksize(100).sum(&a) {
        Err(ReduceError::Failed { rows, error: TaskError::WorkerDied { signal: Some(9), .. } }) => {
            assert_eq!(rows, 0..100)
        }
        other => panic!("{other:?}"),
    }
}

/// 1000 rows of ones under a unique name, then a pass of `f` over them in
/// chunks of 100 rows on `pool`.
fn ones_doubled_in_chunks_of_100<M, F>(
    pool: &Pool,
    name: &str,
    f: F,
) -> (SharedArray<f64, Ix1>, Result<(), InPlaceError>)
where
    M: shmkit::pool::task::WritesRows<f64, Ix1>,
    F: shmkit::pool::task::Task<M, Args = shmkit::pool::ChunkArgs>,
{
    let mut a = SharedArray::<f64, Ix1>::create(&unique(name), 1000).unwrap();
    a.as_slice_mut().unwrap().fill(1.0);
    let done = pool.batch().chunksize(100).for_each_chunk_mut(&mut a, f);
    (a, done)
}

/// Rows a report says were applied hold doubled ones.
fn assert_applied_doubled(a: &SharedArray<f64, Ix1>, report: &shmkit::pool::RowReport) {
    let values = a.as_slice().unwrap();
    for r in &report.applied {
        assert!(values[r.clone()].iter().all(|&x| x == 2.0), "rows {r:?} were reported applied");
    }
}

/// A pass's helpers claim its chunks from a table: a helper busy with
/// other work takes none, and the pass does not wait for it.
#[test]
fn a_pass_does_not_wait_for_a_helper_busy_with_other_work() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_pass_does_not_wait_for_a_helper_busy_with_other_work").build().unwrap();
    let busy = pool.submit(sleep_ms, 30_000);
    // Answered by the other helper: the busy task has left the queue.
    assert_eq!(pool.map(square, [3]), [Ok(9)]);
    let mut a = SharedArray::<f64, Ix1>::create(&unique("pool-busy"), 1_000_000).unwrap();
    pool.batch().chunksize(10_000).for_each_chunk_mut(&mut a, fill_index).unwrap();
    let n = a.len() as f64;
    assert_eq!(pool.sum(&a).unwrap(), n * (n - 1.0) / 2.0);
    assert!(!busy.is_finished(), "the passes finished while the other helper was still busy");
    assert!(busy.cancel(), "the busy task had not finished");
}

/// A read pass whose helper dies after finishing chunks: with a retry,
/// the chunk it died in and those whose results died with it run again,
/// and the sum is exact; without, the pass names the chunk it died in.
#[test]
fn a_read_pass_reruns_what_a_dead_helper_had_finished() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_read_pass_reruns_what_a_dead_helper_had_finished").build().unwrap();
    let mut a = SharedArray::<f64, Ix1>::create(&unique("pool-rerun"), 100_000).unwrap();
    a.as_slice_mut().unwrap().iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
    let marker = std::env::temp_dir().join(unique("shmkit-die-once"));
    let path = marker.to_string_lossy().into_owned();
    let add = |x: f64, y: f64| x + y;
    let sum = pool.batch().chunksize(1000).retries(1).reduce_with(&a, sum_or_die_once, path.clone(), add);
    assert!(marker.exists(), "a helper died");
    assert_eq!(sum.unwrap(), 99_999.0 * 100_000.0 / 2.0);
    std::fs::remove_file(&marker).unwrap();
    let err = pool.batch().chunksize(1000).reduce_with(&a, sum_or_die_once, path, add).unwrap_err();
    std::fs::remove_file(&marker).unwrap();
    match err {
        shmkit::pool::ReduceError::Failed { rows, error: TaskError::WorkerDied { signal: Some(6), .. } } => {
            assert_eq!(rows, 50_000..51_000)
        }
        other => panic!("{other}"),
    }
}
