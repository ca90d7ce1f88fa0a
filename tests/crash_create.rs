//! A creator SIGKILLed (or first SIGSTOPped for a while) at any moment of
//! creating a 256 MiB array leaves nothing that `gc` cannot remove, and an
//! attacher never opens a half-built segment. One test in its own binary:
//! it judges only what its children made (their names, their pids), never
//! the rest of `/dev/shm`, which other programs use too.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{child_arg, shm_exists, spawn_child, unique, Watchdog};
use ndarray::Ix1;
use shmkit::SharedArray;

const BYTES: usize = 256 << 20;
const FILL: u8 = 0x5a;
const TEST: &str = "a_creator_killed_at_any_moment_leaves_nothing_gc_cannot_remove";

/// What the child does, by round: a filled array under the name, a zeroed
/// one under the name, or a zeroed one under a unique name.
fn create(way: &str, name: &str) -> SharedArray<u8, Ix1> {
    match way {
        "filled" => SharedArray::create_with(name, BYTES, |mut v| v.as_slice_mut().unwrap().fill(FILL)),
        "zeroed" => SharedArray::create(name, BYTES),
        _ => SharedArray::create_unique(BYTES),
    }
    .expect("create")
}

fn free_bytes() -> u64 {
    rustix::fs::statvfs("/dev/shm").map(|s| s.f_bavail * s.f_frsize).unwrap()
}

/// Keeps opening `name`; every array it gets must be complete: the right
/// length and, for filled rounds, every sampled byte written.
fn attacher(name: String, stop: Arc<AtomicBool>, opened: Arc<AtomicUsize>, filled: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match SharedArray::<u8, Ix1>::open(&name) {
            Ok(a) => {
                assert_eq!(a.len(), BYTES, "an attacher opened a segment of the wrong size");
                if filled.load(Ordering::SeqCst) {
                    let s = a.as_slice().unwrap();
                    let bad = (0..BYTES).step_by(BYTES / 4096).chain([BYTES - 1]).find(|&i| s[i] != FILL);
                    assert!(bad.is_none(), "an attacher saw a half-filled segment (byte {bad:?})");
                }
                opened.fetch_add(1, Ordering::Relaxed);
            }
            Err(shmkit::Error::NotFound { .. }) => {}
            Err(e) => panic!("an attacher got {e}, not NotFound or a whole segment"),
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Runs one child creating the `way` way; kills it after `delay` (first
/// stopping it for `stop` there, if given: a creator stopped mid-create
/// must show nothing half-built meanwhile), or lets it finish and reports
/// how long that took, when `delay` is `None`. Returns the child's pid too.
fn round(way: &str, name: &str, delay: Option<Duration>, stop: Option<Duration>) -> (Duration, bool, u32) {
    let mut child = spawn_child(TEST, &format!("{way}:{name}"), Stdio::null());
    let start = Instant::now();
    let pid = rustix::process::Pid::from_child(&child);
    let made_it = match delay {
        Some(d) => {
            std::thread::sleep(d);
            if let Some(hold) = stop {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::STOP);
                std::thread::sleep(hold); // the attacher keeps looking meanwhile
            }
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            shm_exists(name)
        }
        None => {
            while !shm_exists(name) && start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_micros(100));
            }
            child.kill().unwrap();
            true
        }
    };
    let took = start.elapsed();
    child.wait().unwrap();
    (took, made_it, pid.as_raw_nonzero().get() as u32)
}

/// Entries of `/dev/shm` a child made: under `name`, or under a unique
/// name of its pid.
fn leftovers(name: &str, pid: u32) -> Vec<String> {
    let unique = format!("shmkit-{pid}-");
    common::dev_shm().into_iter().filter(|e| e.starts_with(name) || e.starts_with(&unique)).collect()
}

#[test]
fn a_creator_killed_at_any_moment_leaves_nothing_gc_cannot_remove() {
    if let Some(arg) = child_arg() {
        let (way, name) = arg.split_once(':').unwrap();
        let _kept = create(way, name);
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(600));
    let rounds: usize =
        std::env::var("SHMKIT_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(common::tier(30, 400));
    let name = unique("crash");
    let free_before = free_bytes();
    let (stop, opened, filled) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::default());
    let watcher = {
        let (n, s, o, f) = (name.clone(), stop.clone(), opened.clone(), Arc::clone(&filled));
        std::thread::spawn(move || attacher(n, s, o, f))
    };
    let ways = ["filled", "zeroed", "unique"];
    // How long each way takes when left alone (the name appears at the end;
    // for unique names, the filled time stands in).
    let full: Vec<Duration> = ways
        .iter()
        .map(|&w| {
            filled.store(w == "filled", Ordering::SeqCst);
            let (t, _, pid) = round(if w == "unique" { "filled" } else { w }, &name, None, None);
            shmkit::admin::Gc::new().creator(pid).run().unwrap();
            t
        })
        .collect();
    let mut rng = common::seeded_rng("crash_create");
    let (mut early, mut late, mut stopped) = (0, 0, 0);
    for r in 0..rounds {
        let way = ways[r % 3];
        filled.store(way == "filled", Ordering::SeqCst);
        // Kill moments spread from process start to well past the name
        // appearing: start-up, reserve, populate, fill, publish, after.
        // (1.6×: creates run slower than the calibration under load.)
        // One round in four stops the creator there first, for up to 50 ms.
        // One round in five aims past the calibrated time (1.5× to 3×), so
        // that kills after the name appeared are never left to chance on a
        // loaded machine.
        let full_us = full[r % 3].as_micros() as u64;
        let moment = match r % 5 {
            4 => full_us * 3 / 2 + rng.below(full_us * 3 / 2),
            _ => rng.below(full_us * 16 / 10),
        };
        let stop = (r % 4 == 3).then(|| Duration::from_millis(rng.below(50)));
        stopped += usize::from(stop.is_some());
        let (_, made_it, pid) = round(way, &name, Some(Duration::from_micros(moment)), stop);
        if made_it {
            late += 1
        } else {
            early += 1
        }
        shmkit::admin::Gc::new().creator(pid).run().unwrap();
        let left = leftovers(&name, pid);
        assert!(left.is_empty(), "round {r} ({way}): left after gc: {left:?}");
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("the attacher never saw a half-built segment");
    let settle = Instant::now();
    while free_bytes() + (BYTES as u64 / 4) < free_before && settle.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(free_bytes() + (BYTES as u64 / 4) >= free_before, "/dev/shm space was not given back");
    let full_ms: Vec<u128> = full.iter().map(Duration::as_millis).collect();
    println!(
        "crash-create: {rounds} kills ({stopped} of them after a stop; {early} before the name appeared, {late} after; \
         full creates took {full_ms:?} ms), an attacher opened {} whole segments and no half-built one, nothing of \
         the creators left after gc",
        opened.load(Ordering::Relaxed)
    );
    assert!(early >= rounds / 4 && late >= rounds / 10, "kill moments were not spread: {early} early, {late} late");
}
