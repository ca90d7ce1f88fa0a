//! Tasks shared by the pool tests and the `pool_helper` example binary,
//! which includes this file, so both register the same list.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

use ndarray::{ArrayView1, ArrayViewMut1, ArrayViewMut2};

pub fn square(x: u64) -> u64 {
    x * x
}

pub fn add(a: i32, b: i32) -> i32 {
    a + b
}

pub fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(8));
    x * x
}

pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

pub fn panics(x: u32) -> u32 {
    if x == 3 {
        panic!("boom on {x}");
    }
    x
}

pub fn fails(x: u32) -> anyhow::Result<u32> {
    use anyhow::Context;
    let inner: anyhow::Result<u32> = Err(anyhow::anyhow!("disk on fire"));
    inner.with_context(|| format!("could not process item {x}"))
}

pub fn pid(_: ()) -> u32 {
    std::process::id()
}

pub fn abort(_: ()) {
    std::process::abort()
}

static MARKER: OnceLock<String> = OnceLock::new();

pub fn set_marker(value: String) -> anyhow::Result<()> {
    anyhow::ensure!(value != "bad", "initializer refused {value:?}");
    let _ = MARKER.set(value);
    Ok(())
}

pub fn marker(_: ()) -> Option<String> {
    MARKER.get().cloned()
}

pub fn double(mut rows: ArrayViewMut1<f64>) {
    rows.mapv_inplace(|x| 2.0 * x);
}

pub fn count_rows(rows: ArrayView1<f64>) -> usize {
    rows.len()
}

pub fn fill_index(start: usize, mut rows: ArrayViewMut1<f64>) {
    rows.iter_mut().enumerate().for_each(|(i, x)| *x = (start + i) as f64);
}

pub fn triple_rows(mut rows: ArrayViewMut2<f32>) {
    rows.mapv_inplace(|x| 3.0 * x);
}

/// A chunk task with a parameter.
pub fn scale(by: &f64, mut rows: ArrayViewMut1<f64>) {
    rows *= *by;
}

/// A reduce task with a parameter: how many elements exceed it.
pub fn count_above(limit: &f64, rows: ArrayView1<f64>) -> usize {
    rows.iter().filter(|&&x| x > *limit).count()
}

pub fn sum_of_squares(rows: ArrayView1<f64>) -> f64 {
    rows.iter().map(|x| x * x).sum()
}

pub fn panic_in_first_chunk(start: usize, rows: ArrayViewMut1<f64>) -> usize {
    assert!(start != 0, "first chunk refuses");
    rows.len()
}

/// Sleeps 20 s if the argument starts with 1: a task that hangs, behind
/// arguments large enough to fill the helper's socket.
pub fn big_arg(v: Vec<u8>) -> usize {
    if v.first() == Some(&1) {
        std::thread::sleep(Duration::from_secs(20));
    }
    v.len()
}

/// `n` bytes: a result may be too large for one message. (Strings encode
/// with one copy; a `Vec<u8>` byte by byte, slow in debug builds.)
pub fn big_result(n: usize) -> String {
    "Z".repeat(n)
}

/// Fails with an error message of `n` bytes.
pub fn big_error(n: usize) -> anyhow::Result<u32> {
    Err(anyhow::anyhow!("E".repeat(n)))
}

/// The length of a string argument.
pub fn str_len(s: String) -> usize {
    s.len()
}

/// Runs this program's test `test` as a child of the helper (marked by
/// `SHMKIT_TEST_GRANDCHILD`) and returns what it printed, and how it ended.
pub fn run_self(test: String) -> String {
    let out = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .env("SHMKIT_TEST_GRANDCHILD", "1")
        .output()
        .expect("start the test binary");
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), out.status)
}

/// Forks a child that keeps this helper's descriptors (its socket among
/// them) for 20 s, writes the child's pid to `path`, then aborts: a
/// helper that dies while a process of its own still holds its socket.
pub fn fork_and_die(path: String) {
    let path = std::ffi::CString::new(path).unwrap();
    // SAFETY: the child only makes async-signal-safe calls (open, write,
    // close, sleep, _exit) before it exits; the parent aborts at once.
    unsafe {
        match libc::fork() {
            0 => {
                let pid = format!("{}", libc::getpid());
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o600);
                libc::write(fd, pid.as_ptr().cast(), pid.len());
                libc::close(fd);
                libc::sleep(20);
                libc::_exit(0);
            }
            _ => {
                libc::sleep(1); // let the child write its pid
                std::process::abort();
            }
        }
    }
}

/// Adds 1 to counter `name`: a task whose running shows.
pub fn bump(name: String) {
    shmkit::sync::ShmCounter::open(&name).unwrap().add(1);
}

/// Adds 1 to counter `name` after `us` microseconds: a kill can land
/// before or after it counts.
pub fn bump_after(name: String, us: u64) {
    std::thread::sleep(std::time::Duration::from_micros(us));
    bump(name);
}

/// Doubles its rows in two halves; the chunk starting at row 400 aborts
/// its helper between the halves: a pass half-applied by a death.
pub fn double_or_die(start: usize, mut rows: ArrayViewMut1<f64>) {
    let half = rows.len() / 2;
    rows.iter_mut().take(half).for_each(|x| *x *= 2.0);
    if start == 400 {
        std::process::abort();
    }
    rows.iter_mut().skip(half).for_each(|x| *x *= 2.0);
}

/// Doubles its rows in two halves; the chunk at row 100 panics between
/// the halves, and the chunk at row 300 aborts its helper there: a
/// helper that dies after a chunk of its own failed half-way.
pub fn double_panic_or_die(start: usize, mut rows: ArrayViewMut1<f64>) {
    let half = rows.len() / 2;
    rows.iter_mut().take(half).for_each(|x| *x *= 2.0);
    match start {
        100 => panic!("chunk 100 refuses"),
        300 => std::process::abort(),
        _ => rows.iter_mut().skip(half).for_each(|x| *x *= 2.0),
    }
}

/// Sums its rows; the first helper to reach the row whose value is 50000
/// (in an array of row indices) creates file `marker` and aborts: a read
/// pass whose helper dies after finishing other chunks, once.
pub fn sum_or_die_once(marker: &String, rows: ArrayView1<f64>) -> f64 {
    if rows.iter().any(|&x| x == 50_000.0) && std::fs::File::create_new(marker).is_ok() {
        std::process::abort();
    }
    rows.sum()
}

/// Prints 200 lines to stderr, each in many pieces (an unbuffered
/// `eprint!` per piece: many `write(2)` calls per line).
pub fn chatter(id: u64) -> u64 {
    for line in 0..200 {
        eprint!("chatter {id} line {line}:");
        for _ in 0..20 {
            eprint!(" {id}{id}{id}");
        }
        eprintln!(" end {id}");
    }
    id
}

/// Starts `sleep SECS`, which inherits this helper's standard output and
/// error (and so keeps their pipes open after the helper is gone); its pid.
pub fn spawn_sleeper(secs: u64) -> u32 {
    std::process::Command::new("sleep").arg(secs.to_string()).spawn().map(|c| c.id()).unwrap_or(0)
}

/// Prints a line, then a partial line, and aborts.
pub fn last_words(id: u64) -> u64 {
    eprintln!("last words of {id}");
    eprint!("cut short {id}");
    std::process::abort()
}

pub fn register(r: &mut shmkit::Registry) {
    r.add(square).add(add).add(slow_square).add(sleep_ms).add(panics).add(fails);
    r.add(pid).add(abort).add(set_marker).add(marker).add(double).add(count_rows);
    r.add(fill_index).add(triple_rows).add(sum_of_squares).add(panic_in_first_chunk);
    r.add(big_arg).add(big_result).add(big_error).add(str_len).add(run_self);
    r.add(fork_and_die).add(bump).add(double_or_die).add(chatter).add(last_words);
    r.add(scale).add(count_above).add(spawn_sleeper).add(sum_or_die_once);
    r.add(double_panic_or_die).add(bump_after);
}
