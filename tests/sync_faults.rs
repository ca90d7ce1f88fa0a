//! Regression tests for the primitives' soundness and misuse holes found
//! in review: forgotten guards, `Duration::MAX`, zombie and stopped
//! processes, a writer's timeout after owner-died, the barrier's
//! take-back race. Each ran in a child process where a crash is possible.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{child_arg, run_child, spawn_child, unique, wait_with_watchdog, Watchdog};
use shmkit::sync::{EventMode, LockError, PopError, PushError, ShmBarrier, ShmEvent, ShmMutex, ShmQueue, ShmRwLock};

fn signal(child: &std::process::Child, sig: rustix::process::Signal) {
    common::signal(child.id(), sig).unwrap();
}

#[test]
fn a_forgotten_guard_never_leaves_the_robust_list_pointing_into_unmapped_memory() {
    let test = "a_forgotten_guard_never_leaves_the_robust_list_pointing_into_unmapped_memory";
    if child_arg().is_some() {
        for round in 0..50 {
            let a = ShmMutex::create_unique(round).unwrap();
            std::mem::forget(a.lock().unwrap()); // on this thread's robust list for good
            drop(a); // must not unmap it: glibc writes through that list
            let b = ShmMutex::create_unique(0u32).unwrap();
            *b.lock().unwrap() += 1; // walks and rewrites the robust list
            let w = ShmRwLock::create_unique(0u32).unwrap();
            std::mem::forget(w.write().unwrap());
            drop(w);
            drop(b.lock().unwrap());
        }
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    assert!(run_child(test, "go").success(), "the process crashed");
}

#[test]
fn duration_max_means_wait_as_long_as_it_takes_everywhere() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let max = Duration::MAX;
    let m = ShmMutex::create(&unique("max-m"), 1u8).unwrap();
    assert_eq!(*m.lock_timeout(max).unwrap(), 1);
    let rw = ShmRwLock::create(&unique("max-rw"), 2u8).unwrap();
    assert_eq!(*rw.read_timeout(max).unwrap(), 2);
    assert_eq!(*rw.write_timeout(max).unwrap(), 2);
    let ev = ShmEvent::create(&unique("max-ev"), EventMode::Manual).unwrap();
    ev.set();
    assert!(ev.wait_timeout(max).is_ok());
    let q = ShmQueue::<u32>::create(&unique("max-q"), 2).unwrap();
    q.push_timeout(3, max).unwrap();
    assert_eq!(q.pop_timeout(max), Ok(3));
    assert!(ShmBarrier::create(&unique("max-bar"), 1).unwrap().wait_timeout(max).is_ok());
    let q2 = q.name().to_owned();
    let popper = std::thread::spawn(move || ShmQueue::<u32>::open(&q2).unwrap().pop_timeout(Duration::MAX));
    std::thread::sleep(Duration::from_millis(50));
    q.push(4).unwrap();
    assert_eq!(popper.join().unwrap(), Ok(4), "a blocked Duration::MAX wait still wakes");
}

/// The reader both reader tests start: takes `{base}-rw` for reading,
/// says so through `{base}-held`, and holds it until killed.
fn hold_a_read_guard(base: &str) {
    let rw = ShmRwLock::<u64>::open(&format!("{base}-rw")).unwrap();
    let _r = rw.read().unwrap();
    ShmEvent::open(&format!("{base}-held")).unwrap().set();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_zombie_reader_does_not_block_a_writer() {
    let test = "a_zombie_reader_does_not_block_a_writer";
    if let Some(base) = child_arg() {
        return hold_a_read_guard(&base);
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let base = unique("zombie");
    let rw = ShmRwLock::create(&format!("{base}-rw"), 0u64).unwrap();
    let held = ShmEvent::create(&format!("{base}-held"), EventMode::Manual).unwrap();
    let mut reader = spawn_child(test, &base, Stdio::null());
    held.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(matches!(rw.write_timeout(Duration::from_millis(50)), Err(LockError::Timeout)), "a live reader blocks");
    signal(&reader, rustix::process::Signal::KILL);
    // Not reaped yet: a zombie, which kill(pid, 0) reports as existing.
    std::thread::sleep(Duration::from_millis(50));
    *rw.write_timeout(Duration::from_secs(2)).expect("a zombie's slot is free") = 1;
    reader.wait().unwrap();
}

#[test]
fn a_reader_in_another_pid_namespace_keeps_its_slot() {
    let test = "a_reader_in_another_pid_namespace_keeps_its_slot";
    if let Some(base) = child_arg() {
        return hold_a_read_guard(&base);
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let base = unique("pidns-reader");
    let rw = ShmRwLock::create(&format!("{base}-rw"), 0u64).unwrap();
    let held = ShmEvent::create(&format!("{base}-held"), EventMode::Manual).unwrap();
    let mut ns = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("SHMKIT_TEST_CHILD", &base)
        .stdout(Stdio::null())
        .spawn()
        .expect("unshare (util-linux) is needed to test PID namespaces");
    held.wait_timeout(Duration::from_secs(30)).expect("the namespaced reader took its slot");
    for _ in 0..3 {
        assert!(matches!(rw.write_timeout(Duration::from_millis(100)), Err(LockError::Timeout)), "slot freed");
    }
    ns.kill().unwrap();
    assert!(!wait_with_watchdog(ns, Duration::from_secs(10)).success());
    *rw.write_timeout(Duration::from_secs(2)).expect("the reader's slot is free once it is gone") = 1;
}

#[test]
fn a_writer_that_times_out_after_owner_died_leaves_the_lock_usable_and_the_death_reported() {
    let test = "a_writer_that_times_out_after_owner_died_leaves_the_lock_usable_and_the_death_reported";
    if let Some(name) = child_arg() {
        let rw = ShmRwLock::<u64>::open(&name).unwrap();
        let _w = rw.write(); // holds the gate, waits for the parent's reader: killed here
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let rw = ShmRwLock::create(&unique("rw-timeout"), 5u64).unwrap();
    let reader_handle = ShmRwLock::<u64>::open(rw.name()).unwrap();
    let reader = reader_handle.read().unwrap();
    let mut writer = spawn_child(test, rw.name(), Stdio::null());
    std::thread::sleep(Duration::from_millis(300)); // it takes the gate, then waits on our reader
    signal(&writer, rustix::process::Signal::KILL);
    writer.wait().unwrap();
    let got = rw.write_timeout(Duration::from_millis(100));
    assert!(matches!(got, Err(LockError::Timeout)), "the reader still holds it: {got:?}");
    drop(reader);
    let Err(LockError::OwnerDied(died)) = rw.write_timeout(Duration::from_secs(2)) else {
        panic!("the death was lost with the timed-out writer")
    };
    assert_eq!(*died.acknowledge(), 5);
    assert_eq!(*rw.read().expect("usable after all"), 5);
}

#[test]
fn a_stopped_process_holding_the_queue_lock_never_blocks_try_or_timeout_calls() {
    let test = "a_stopped_process_holding_the_queue_lock_never_blocks_try_or_timeout_calls";
    if let Some(name) = child_arg() {
        let q = ShmQueue::<u64>::open(&name).unwrap();
        for i in 0.. {
            let _ = q.try_push(i);
            let _ = q.try_pop();
        }
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let q = ShmQueue::<u64>::create(&unique("stopped"), 8).unwrap();
    let mut child = spawn_child(test, q.name(), Stdio::null());
    std::thread::sleep(Duration::from_millis(100));
    let (mut busy, rounds) = (0, 400);
    for round in 0..rounds {
        signal(&child, rustix::process::Signal::STOP);
        std::thread::sleep(Duration::from_micros(200)); // let the stop land
        let t = Instant::now();
        match q.try_pop() {
            Err(PopError::Busy) => {
                busy += 1;
                let t = Instant::now();
                // Held by the stopped process (a running one lets go within
                // microseconds): closing would have to wait for it.
                assert_eq!(q.close_timeout(Duration::from_millis(20)), Err(shmkit::sync::Timeout), "round {round}");
                assert!(!q.is_closed(), "round {round}: a close that timed out leaves the queue open");
                assert!(
                    t.elapsed() < Duration::from_millis(120),
                    "round {round}: close_timeout took {:?}",
                    t.elapsed()
                );
            }
            Ok(_) | Err(PopError::Empty) => {}
            other => panic!("round {round}: {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_millis(101), "round {round}: try_pop took {:?}", t.elapsed());
        let t = Instant::now();
        let pushed = q.push_timeout(1, Duration::from_millis(20));
        assert!(matches!(pushed, Ok(()) | Err(PushError::Timeout(1))), "round {round}: {pushed:?}");
        assert!(t.elapsed() < Duration::from_millis(120), "round {round}: push_timeout took {:?}", t.elapsed());
        signal(&child, rustix::process::Signal::CONT);
        std::thread::sleep(Duration::from_micros(300));
    }
    signal(&child, rustix::process::Signal::KILL);
    child.wait().unwrap();
    q.close_timeout(Duration::from_secs(10)).expect("a dead holder releases the lock");
    assert!(q.is_closed());
    println!("stopped the queue's user {rounds} times, {busy} of them holding its lock; no call blocked");
    assert!(busy > 0, "no stop landed inside the lock: the test proved nothing");
}

#[test]
fn a_barrier_never_opens_for_a_waiter_that_reports_timeout() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let bar = ShmBarrier::create(&unique("bar-race"), 2).unwrap();
    let name = bar.name().to_owned();
    let mut violations = 0;
    for round in 0..3000u64 {
        let n = name.clone();
        let late = Duration::from_micros(900 + round % 200);
        let other = std::thread::spawn(move || {
            let b = ShmBarrier::open(&n).unwrap();
            std::thread::sleep(late);
            b.wait_timeout(Duration::from_millis(3))
        });
        let mine = bar.wait_timeout(Duration::from_millis(1));
        let theirs = other.join().unwrap();
        // If I timed out, my arrival was taken back: the other cannot pass.
        if mine.is_err() && theirs.is_ok() {
            violations += 1;
        }
        // Either way the barrier must still pair the next two arrivals.
        let n = name.clone();
        let again = std::thread::spawn(move || ShmBarrier::open(&n).unwrap().wait_timeout(Duration::from_secs(5)));
        assert!(bar.wait_timeout(Duration::from_secs(5)).is_ok() && again.join().unwrap().is_ok(), "round {round}");
    }
    assert_eq!(violations, 0, "{violations} waiters reported Timeout though the barrier opened for them");
}
