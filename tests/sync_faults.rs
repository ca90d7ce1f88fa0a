//! Regression tests for the primitives' soundness and misuse holes found
//! in review: forgotten guards, `Duration::MAX`, zombie and stopped
//! processes, a writer's timeout after owner-died, the barrier's
//! take-back race. Each ran in a child process where a crash is possible.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{child_arg, run_child, spawn_child, unique, wait_with_watchdog, Watchdog};
use shmkit::sync::{
    EventMode, LockError, LockTimeoutError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, ShmBarrier,
    ShmCounter, ShmEvent, ShmMutex, ShmQueue, ShmRwLock, TryRecvError, TrySendError,
};

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
    let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
    tx.send_timeout(3, max).unwrap();
    assert_eq!(rx.recv_timeout(max), Ok(3));
    assert!(ShmBarrier::create(&unique("max-bar"), 1).unwrap().wait_timeout(max).is_ok());
    let q2 = q.name().to_owned();
    let popper =
        std::thread::spawn(move || ShmQueue::<u32>::open(&q2).unwrap().receiver().unwrap().recv_timeout(Duration::MAX));
    std::thread::sleep(Duration::from_millis(50));
    tx.send(4).unwrap();
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
    assert!(
        matches!(rw.write_timeout(Duration::from_millis(50)), Err(LockTimeoutError::Timeout)),
        "a live reader blocks"
    );
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
        assert!(matches!(rw.write_timeout(Duration::from_millis(100)), Err(LockTimeoutError::Timeout)), "slot freed");
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
    // The reader in another thread: on this one, a write would be refused
    // as a deadlock instead of waiting.
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let name = rw.name().to_owned();
    let reader = std::thread::spawn(move || {
        let handle = ShmRwLock::<u64>::open(&name).unwrap();
        let _r = handle.read().unwrap();
        read_tx.send(()).unwrap();
        let _ = done_rx.recv();
    });
    read_rx.recv().unwrap();
    let mut writer = spawn_child(test, rw.name(), Stdio::null());
    std::thread::sleep(Duration::from_millis(300)); // it takes the gate, then waits on our reader
    signal(&writer, rustix::process::Signal::KILL);
    writer.wait().unwrap();
    let got = rw.write_timeout(Duration::from_millis(100));
    assert!(matches!(got, Err(LockTimeoutError::Timeout)), "the reader still holds it: {got:?}");
    drop(done_tx);
    reader.join().unwrap();
    let Err(LockTimeoutError::OwnerDied(died)) = rw.write_timeout(Duration::from_secs(2)) else {
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
        let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
        for i in 0.. {
            let _ = tx.try_send(i);
            let _ = rx.try_recv();
        }
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let q = ShmQueue::<u64>::create(&unique("stopped"), 8).unwrap();
    let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
    // The child stays 100 ms inside the lock on each send (a fault point),
    // so that most stops land there, not a few in a thousand.
    let mut child =
        common::child_command(test, q.name(), Some("queue-send-locked")).stdout(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (mut busy, rounds) = (0, common::tier(60, 600));
    for round in 0..rounds {
        signal(&child, rustix::process::Signal::STOP);
        std::thread::sleep(Duration::from_micros(200)); // let the stop land
        let t = Instant::now();
        match rx.try_recv() {
            Err(TryRecvError::Stalled) => {
                busy += 1;
                let t = Instant::now();
                // Held by the stopped process (a running one lets go within
                // microseconds): shutting down would have to wait for it.
                assert_eq!(q.shutdown_timeout(Duration::from_millis(20)), Err(shmkit::sync::Timeout), "round {round}");
                assert!(!q.is_shutdown(), "round {round}: a shutdown that timed out leaves the queue open");
                assert!(
                    t.elapsed() < Duration::from_millis(120),
                    "round {round}: shutdown_timeout took {:?}",
                    t.elapsed()
                );
            }
            Ok(_) | Err(TryRecvError::Empty) => {}
            other => panic!("round {round}: {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_millis(101), "round {round}: try_recv took {:?}", t.elapsed());
        let t = Instant::now();
        let sent = tx.send_timeout(1, Duration::from_millis(20));
        assert!(matches!(sent, Ok(()) | Err(SendTimeoutError::Timeout(1))), "round {round}: {sent:?}");
        assert!(t.elapsed() < Duration::from_millis(120), "round {round}: send_timeout took {:?}", t.elapsed());
        signal(&child, rustix::process::Signal::CONT);
        std::thread::sleep(Duration::from_micros(300));
    }
    signal(&child, rustix::process::Signal::KILL);
    child.wait().unwrap();
    q.shutdown_timeout(Duration::from_secs(10)).expect("a dead holder releases the lock");
    assert!(q.is_shutdown());
    println!("stopped the queue's user {rounds} times, {busy} of them holding its lock; no call blocked");
    assert!(busy > 0, "no stop landed inside the lock: the test proved nothing");
}

#[test]
fn a_barrier_never_opens_for_a_waiter_that_reports_timeout() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let bar = ShmBarrier::create(&unique("bar-race"), 2).unwrap();
    let name = bar.name().to_owned();
    let mut violations = 0;
    for round in 0..common::tier(1000, 10_000u64) {
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

/// Runs `test` as a child told `arg`, with `SHMKIT_FAULT_INJECT=point`: it
/// SIGKILLs itself when it reaches that point.
fn child_dying_at(test: &str, arg: &str, point: &str) -> std::process::Child {
    common::child_command(test, arg, Some(point)).stdout(Stdio::null()).spawn().unwrap()
}

/// A waker killed between its state change and its wake-up: the sleeper
/// must notice within a moment (every sleep is capped at a slice), not at
/// its deadline, nor never.
#[test]
fn a_waker_killed_before_its_wake_up_never_strands_a_sleeper() {
    let test = "a_waker_killed_before_its_wake_up_never_strands_a_sleeper";
    if let Some(arg) = child_arg() {
        let (what, base) = arg.split_once(':').unwrap();
        std::thread::sleep(Duration::from_millis(200)); // let the sleeper sleep
        match what {
            "event" => ShmEvent::open(&format!("{base}-ev")).unwrap().set(),
            "barrier" => drop(ShmBarrier::open(&format!("{base}-bar")).unwrap().wait()),
            _ => ShmQueue::<u64>::open(&format!("{base}-q")).unwrap().sender().unwrap().send(7).unwrap(),
        }
        unreachable!("the fault point kills this process before it wakes anyone");
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let base = unique("waker");
    let ev = ShmEvent::create(&format!("{base}-ev"), EventMode::Manual).unwrap();
    let bar = ShmBarrier::create(&format!("{base}-bar"), 2).unwrap();
    let q = ShmQueue::<u64>::create(&format!("{base}-q"), 4).unwrap();
    let rx = q.receiver().unwrap();
    let cases = [
        ("event", "event-set-before-wake"),
        ("barrier", "barrier-open-before-wake"),
        ("queue", "queue-send-before-wake"),
    ];
    for (what, point) in cases {
        let mut waker = child_dying_at(test, &format!("{what}:{base}"), point);
        let start = Instant::now();
        let limit = Duration::from_secs(8);
        let woke = match what {
            "event" => ev.wait_timeout(limit).is_ok(),
            "barrier" => bar.wait_timeout(limit).is_ok(),
            _ => rx.recv_timeout(limit) == Ok(7),
        };
        let took = start.elapsed();
        let status = waker.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{what}: the waker died at its point"
        );
        assert!(woke, "{what}: the sleeper did not see the change");
        assert!(took < Duration::from_secs(2), "{what}: the sleeper woke only after {took:?}");
    }
}

/// Pipe semantics: a receive from an empty queue whose senders all died
/// ends (after draining), a send to a queue whose receivers all died
/// fails, and a side that starts before the other never sees an end.
#[test]
fn a_queue_whose_other_side_is_dead_ends_instead_of_blocking() {
    let test = "a_queue_whose_other_side_is_dead_ends_instead_of_blocking";
    if let Some(arg) = child_arg() {
        let (role, name) = arg.split_once(':').unwrap();
        let q = ShmQueue::<u64>::open(name).unwrap();
        let (_tx, _rx) = match role {
            "sender" => (Some(q.sender().unwrap()), None),
            _ => (None, Some(q.receiver().unwrap())),
        };
        if let Some(tx) = &_tx {
            tx.send(1).unwrap();
        }
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    // Receivers before any sender: they wait, they do not end.
    let q = ShmQueue::<u64>::create(&unique("ends"), 2).unwrap();
    let rx = q.receiver().unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_millis(100)), Err(RecvTimeoutError::Timeout), "no sender yet");
    let mut sender = spawn_child(test, &format!("sender:{}", q.name()), Stdio::null());
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(1));
    signal(&sender, rustix::process::Signal::KILL);
    sender.wait().unwrap();
    let start = Instant::now();
    assert_eq!(rx.recv(), Err(RecvError::Disconnected), "every sender died: the blocking recv ends");
    assert!(start.elapsed() < Duration::from_secs(1), "it took {:?}", start.elapsed());
    // Senders before any receiver may send; once receivers came and all
    // died, a send into a full queue ends too, and so does one with room.
    let q = ShmQueue::<u64>::create(&unique("ends2"), 2).unwrap();
    let tx = q.sender().unwrap();
    tx.send(1).unwrap();
    let mut receiver = spawn_child(test, &format!("receiver:{}", q.name()), Stdio::null());
    std::thread::sleep(Duration::from_millis(300)); // it joined
    tx.send(2).unwrap();
    signal(&receiver, rustix::process::Signal::KILL);
    receiver.wait().unwrap();
    let start = Instant::now();
    assert_eq!(tx.send(3), Err(SendError::Disconnected(3)), "the queue is full and its receivers died");
    assert!(start.elapsed() < Duration::from_secs(1), "it took {:?}", start.elapsed());
    std::thread::sleep(Duration::from_millis(5));
    let rx = q.receiver().unwrap();
    assert_eq!(rx.try_recv(), Ok(1), "a new receiver takes what was queued");
    drop(rx);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)), "with room, and no receiver left");
}

#[test]
fn reading_then_writing_on_one_thread_is_an_error_not_a_hang() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let rw = ShmRwLock::create(&unique("rw-self"), 1u32).unwrap();
    let r = rw.read().unwrap();
    let t = Instant::now();
    assert!(matches!(rw.write(), Err(LockError::Deadlock)), "the blocking write would wait for its own reader");
    assert!(t.elapsed() < Duration::from_millis(100));
    let nested = rw.read().unwrap();
    assert_eq!((*r, *nested), (1, 1));
    drop((r, nested));
    *rw.write().unwrap() = 2;
    let m = ShmMutex::create(&unique("mutex-self"), 0u8).unwrap();
    let g = m.lock().unwrap();
    assert!(matches!(m.lock(), Err(LockError::Deadlock)));
    drop(g);
}

/// A read guard forgotten on a handle that is then dropped: a new handle
/// (maybe at the same address) reads with a slot of its own, and a writer
/// is not refused forever.
#[test]
fn a_forgotten_read_guard_dies_with_its_handle() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let rw = ShmRwLock::create(&unique("rw-forget"), 5u32).unwrap();
    for i in 0..3 {
        let h = ShmRwLock::<u32>::open(rw.name()).unwrap(); // the same stack slot each time
        let g = h.read().unwrap();
        assert_eq!(*g, 5);
        if i == 0 {
            std::mem::forget(g);
        }
    }
    let w = rw.write_timeout(Duration::from_secs(5));
    assert!(w.is_ok(), "the writer waited for a forgotten reader of a dropped handle: {w:?}");
}

#[test]
fn a_primitive_opened_with_another_type_is_refused_by_its_dtype() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let m = ShmMutex::create(&unique("typed-m"), 0u64).unwrap();
    let e = ShmMutex::<f64>::open(m.name()).map(drop).unwrap_err();
    assert!(
        matches!(&e, shmkit::Error::WrongType { found, expected, .. } if found == "value <u8" && expected == "value <f8"),
        "{e}"
    );
    shmkit::record! {
        struct A { x: u32, y: u32 }
    }
    shmkit::record! {
        struct B { left: u32, right: u32 }
    }
    let q = ShmQueue::<A>::create(&unique("typed-q"), 4).unwrap();
    assert!(
        matches!(ShmQueue::<B>::open(q.name()).map(drop), Err(shmkit::Error::WrongType { .. })),
        "same size, other fields"
    );
    assert!(ShmQueue::<A>::open(q.name()).is_ok());
    let rw = ShmRwLock::create(&unique("typed-rw"), [0u16; 4]).unwrap();
    assert!(matches!(ShmRwLock::<u64>::open(rw.name()).map(drop), Err(shmkit::Error::WrongType { .. })));
    assert!(ShmCounter::open(rw.name()).is_err(), "and another kind is refused by its kind");
}

#[test]
fn a_forked_child_cannot_remove_its_parents_segment_or_share_its_claims() {
    let test = "a_forked_child_cannot_remove_its_parents_segment_or_share_its_claims";
    if child_arg().is_some() {
        let owner = shmkit::SharedArray::<u8, ndarray::Ix1>::create(&unique("forked"), 16).unwrap();
        let rw = ShmRwLock::create_unique(0u8).unwrap();
        let second = ShmRwLock::create_unique(1u8).unwrap();
        let second_name = second.name().to_owned();
        let view = owner.view().unwrap();
        // SAFETY: the child only calls async-signal-safe code paths of
        // ours and then _exit()s (this process is single-threaded here:
        // it runs as the only test of a child process).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = {
                let forked = owner.view().map(drop).err().map(|e| e.to_string()).unwrap_or_default();
                let read = rw.read().map(drop).err().map(|e| format!("{e:?}")).unwrap_or_default();
                let removed = owner.remove_name().err().map(|e| e.to_string()).unwrap_or_default();
                i32::from(forked.contains("inherited across fork"))
                    + 2 * i32::from(read == "Inherited")
                    + 4 * i32::from(removed.contains("inherited across fork"))
            };
            // An inherited owner handle: its drop must not unlink the
            // parent's segment. (Forgotten, not dropped, would prove
            // nothing; the view borrows it, so leave by _exit after a
            // drop of a second inherited owner, made before the fork.)
            drop(second);
            // Its copy of the parent's view: dropping it must not release
            // the parent's claim (they would share one open file).
            drop(view);
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let mut other = shmkit::SharedArray::<u8, ndarray::Ix1>::open(owner.name()).unwrap();
        let busy = other.view_mut().map(drop);
        assert!(
            matches!(busy, Err(shmkit::Error::Busy { .. })),
            "the parent's claim outlives the child's drop: {busy:?}"
        );
        drop(view);
        assert_eq!(libc::WEXITSTATUS(status), 7, "the child was refused views, slots and removal");
        assert!(common::shm_exists(owner.name()), "the child's uses left the parent's segment alone");
        assert!(common::shm_exists(&second_name), "the child's drop of an owner handle left its segment alone");
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(30));
    assert!(run_child(test, "go").success());
}
