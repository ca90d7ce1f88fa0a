//! Cross-process primitives in real processes: robustness when holders
//! die, timeouts, a million queue records exactly once.

mod common;

use std::time::{Duration, Instant};

use common::{child_arg, spawn_child, unique, wait_with_watchdog, Watchdog};
use ndarray::Ix1;
use shmkit::sync::{
    EventMode, LockError, LockTimeoutError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, ShmBarrier,
    ShmCounter, ShmEvent, ShmMutex, ShmQueue, ShmRwLock, TryLockError,
};
use shmkit::SharedArray;

fn kill9(child: &mut std::process::Child) {
    common::signal(child.id(), rustix::process::Signal::KILL).unwrap();
    child.wait().unwrap();
}

/// Runs `test` as a child with `arg`, in the background.
fn child(test: &str, arg: &str) -> std::process::Child {
    spawn_child(test, arg, std::process::Stdio::null())
}

#[test]
fn a_dead_holder_hands_the_mutex_on_with_owner_died_within_100ms() {
    let test = "a_dead_holder_hands_the_mutex_on_with_owner_died_within_100ms";
    if let Some(base) = child_arg() {
        let (a, b) = (
            ShmMutex::<u64>::open(&format!("{base}-a")).unwrap(),
            ShmMutex::<u64>::open(&format!("{base}-b")).unwrap(),
        );
        let (mut ga, mut gb) = (a.lock().unwrap(), b.lock().unwrap());
        (*ga, *gb) = (42, 43);
        ShmEvent::open(&format!("{base}-held")).unwrap().set();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let base = unique("mutex");
    let a = ShmMutex::create(&format!("{base}-a"), 0u64).unwrap();
    let b = ShmMutex::create(&format!("{base}-b"), 0u64).unwrap();
    let held = ShmEvent::create(&format!("{base}-held"), EventMode::Manual).unwrap();
    let mut holder = child(test, &base);
    held.wait_timeout(Duration::from_secs(30)).expect("the child took the locks");
    assert!(matches!(a.try_lock(), Err(TryLockError::WouldBlock)));
    kill9(&mut holder);
    let start = Instant::now();
    let Err(LockTimeoutError::OwnerDied(mut died)) = a.lock_timeout(Duration::from_secs(5)) else {
        panic!("no owner-died")
    };
    assert!(start.elapsed() < Duration::from_millis(100), "took {:?}", start.elapsed());
    assert_eq!(**died.guard(), 42, "the dead holder's write is visible");
    let mut guard = died.acknowledge();
    *guard = 7;
    drop(guard);
    assert_eq!(*a.lock().expect("clean after acknowledging"), 7);
    let Err(LockError::OwnerDied(unacknowledged)) = b.lock() else { panic!("no owner-died") };
    drop(unacknowledged);
    // Released unacknowledged: usable, and the death still reported until
    // someone acknowledges it.
    let Err(LockError::OwnerDied(again)) = b.lock() else { panic!("the death is still reported") };
    drop(again.acknowledge());
    assert!(b.lock().is_ok(), "clean once acknowledged");
}

#[test]
fn every_timeout_returns_on_time() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let base = unique("timeouts");
    let m = ShmMutex::create(&format!("{base}-m"), 0u32).unwrap();
    let rw = ShmRwLock::create(&format!("{base}-rw"), 0u32).unwrap();
    let ev = ShmEvent::create(&format!("{base}-ev"), EventMode::Auto).unwrap();
    let q = ShmQueue::<u32>::create(&format!("{base}-q"), 1).unwrap();
    let (qtx, qrx) = (q.sender().unwrap(), q.receiver().unwrap());
    let bar = ShmBarrier::create(&format!("{base}-bar"), 2).unwrap();
    qtx.send(1).unwrap();
    let mname = m.name().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let m = ShmMutex::<u32>::open(&mname).unwrap();
        let _g = m.lock().unwrap();
        tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(5));
    });
    rx.recv().unwrap();
    // A reader in another thread (a read guard on this one would make the
    // writes below a Deadlock error, not a wait).
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let rwname = rw.name().to_owned();
    let reader = std::thread::spawn(move || {
        let rw = ShmRwLock::<u32>::open(&rwname).unwrap();
        let _r = rw.read().unwrap();
        read_tx.send(()).unwrap();
        let _ = done_rx.recv();
    });
    read_rx.recv().unwrap();
    for limit in [Duration::from_millis(10), Duration::from_millis(500), Duration::from_millis(1500)] {
        let on_time = |took: Duration, what: &str| {
            assert!(took >= limit && took < limit + Duration::from_millis(250), "{what} {limit:?} took {took:?}");
        };
        let t = Instant::now();
        assert!(matches!(m.lock_timeout(limit), Err(LockTimeoutError::Timeout)));
        on_time(t.elapsed(), "mutex");
        let t = Instant::now();
        assert!(matches!(rw.write_timeout(limit), Err(LockTimeoutError::Timeout)));
        on_time(t.elapsed(), "rwlock write");
        let t = Instant::now();
        assert!(ev.wait_timeout(limit).is_err());
        on_time(t.elapsed(), "event");
        let t = Instant::now();
        assert_eq!(qtx.send_timeout(2, limit), Err(SendTimeoutError::Timeout(2)));
        on_time(t.elapsed(), "queue send");
        let t = Instant::now();
        assert!(bar.wait_timeout(limit).is_err());
        on_time(t.elapsed(), "barrier");
    }
    drop(done_tx);
    reader.join().unwrap();
    assert_eq!(qrx.recv_timeout(Duration::from_millis(10)), Ok(1));
    let t = Instant::now();
    assert_eq!(qrx.recv_timeout(Duration::from_millis(500)), Err(RecvTimeoutError::Timeout));
    assert!(t.elapsed() >= Duration::from_millis(500) && t.elapsed() < Duration::from_millis(750));
    holder.join().unwrap();
}

#[test]
fn a_million_records_from_two_producers_reach_two_consumers_exactly_once() {
    const PER_PRODUCER: u64 = 500_000;
    let test = "a_million_records_from_two_producers_reach_two_consumers_exactly_once";
    if let Some(arg) = child_arg() {
        let (role, base) = arg.split_once(':').unwrap();
        let q = ShmQueue::<u64>::open(&format!("{base}-q")).unwrap();
        if let Some(p) = role.strip_prefix("producer") {
            let p: u64 = p.parse().unwrap();
            let tx = q.sender().unwrap();
            (0..PER_PRODUCER).for_each(|i| tx.send(p * PER_PRODUCER + i).unwrap());
        } else {
            // Each consumer counts into its own array: two mutable views of
            // one array would be refused (Error::Busy), rightly.
            let mut seen = SharedArray::<u8, Ix1>::open(&format!("{base}-seen-{role}")).unwrap();
            let mut seen = seen.as_slice_mut().unwrap();
            for x in q.receiver().unwrap().iter() {
                seen[x as usize] += 1;
            }
        }
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(300));
    let base = unique("million");
    let _q = ShmQueue::<u64>::create(&format!("{base}-q"), 4096).unwrap();
    let seen: Vec<_> = (0..2)
        .map(|c| {
            SharedArray::<u8, Ix1>::create(&format!("{base}-seen-consumer{c}"), 2 * PER_PRODUCER as usize).unwrap()
        })
        .collect();
    let consumers: Vec<_> = (0..2).map(|c| child(test, &format!("consumer{c}:{base}"))).collect();
    let producers: Vec<_> = (0..2).map(|p| child(test, &format!("producer{p}:{base}"))).collect();
    for p in producers {
        assert!(wait_with_watchdog(p, Duration::from_secs(240)).success());
    }
    for c in consumers {
        assert!(wait_with_watchdog(c, Duration::from_secs(60)).success(), "the senders' end did not end a consumer");
    }
    let (a, b) = (seen[0].as_slice().unwrap(), seen[1].as_slice().unwrap());
    let wrong: Vec<usize> = (0..a.len()).filter(|&i| a[i] + b[i] != 1).take(5).collect();
    assert!(wrong.is_empty(), "records not delivered exactly once, e.g. at {wrong:?}");
}

#[test]
fn shutdown_ends_every_waiting_consumer_after_the_queue_drains() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let q = ShmQueue::<u32>::create(&unique("shutdown"), 8).unwrap();
    let tx = q.sender().unwrap();
    tx.send(5).unwrap();
    let name = q.name().to_owned();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let name = name.clone();
            std::thread::spawn(move || {
                let rx = ShmQueue::<u32>::open(&name).unwrap().receiver().unwrap();
                let got: Vec<u32> = std::iter::from_fn(|| rx.recv().ok()).collect();
                (got, rx.recv())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    q.shutdown();
    let ends: Vec<(Vec<u32>, Result<u32, RecvError>)> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    let got: Vec<u32> = ends.iter().flat_map(|(g, _)| g.clone()).collect();
    assert_eq!(got, [5], "the record before the shutdown is delivered once, then every consumer ends");
    assert!(ends.iter().all(|(_, end)| *end == Err(RecvError::Shutdown)), "{ends:?}");
    assert_eq!(tx.send(6), Err(SendError::Shutdown(6)));
}

#[test]
fn a_killed_producer_never_blocks_the_others() {
    let test = "a_killed_producer_never_blocks_the_others";
    if let Some(name) = child_arg() {
        let tx = ShmQueue::<u64>::open(&name).unwrap().sender().unwrap();
        for i in 0.. {
            tx.send(i).unwrap();
        }
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let q = ShmQueue::<u64>::create(&unique("killed"), 64).unwrap();
    let rx = q.receiver().unwrap();
    let mut producer = child(test, q.name());
    for _ in 0..2000 {
        rx.recv_timeout(Duration::from_secs(10)).expect("records flow");
    }
    kill9(&mut producer); // likely inside send, perhaps holding the queue lock
    while rx.try_recv().is_ok() {}
    let tx = q.sender().unwrap();
    tx.send_timeout(1, Duration::from_secs(1)).expect("the queue still takes records");
    assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(1));
}

#[test]
fn a_dead_reader_is_reclaimed_and_a_dead_writer_reported() {
    let test = "a_dead_reader_is_reclaimed_and_a_dead_writer_reported";
    if let Some(arg) = child_arg() {
        let (role, base) = arg.split_once(':').unwrap();
        let rw = ShmRwLock::<u64>::open(&format!("{base}-rw")).unwrap();
        let _held = if role == "reader" { Ok(rw.read().unwrap()) } else { Err(rw.write().unwrap()) };
        ShmEvent::open(&format!("{base}-held")).unwrap().set();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let base = unique("rw");
    let rw = ShmRwLock::create(&format!("{base}-rw"), 1u64).unwrap();
    let held = ShmEvent::create(&format!("{base}-held"), EventMode::Auto).unwrap();
    let mut reader = child(test, &format!("reader:{base}"));
    held.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(matches!(rw.write_timeout(Duration::from_millis(50)), Err(LockTimeoutError::Timeout)));
    let other = rw.read().unwrap(); // readers share
    assert_eq!(*other, 1);
    drop(other);
    kill9(&mut reader);
    *rw.write_timeout(Duration::from_secs(2)).expect("the dead reader's slot is reclaimed") = 2;
    let mut writer = child(test, &format!("writer:{base}"));
    held.wait_timeout(Duration::from_secs(30)).unwrap();
    kill9(&mut writer);
    let Err(LockTimeoutError::OwnerDied(died)) = rw.read_timeout(Duration::from_secs(2)) else {
        panic!("no owner-died")
    };
    assert_eq!(*died.acknowledge(), 2, "a reader sees the data, but cannot vouch for it");
    drop(rw.read().map(drop).expect_err("readers are told until a writer repairs"));
    let Err(LockError::OwnerDied(mut died)) = rw.write() else { panic!("no owner-died for the writer") };
    **died.guard() = 3;
    drop(died.acknowledge());
    assert_eq!(*rw.read().expect("clean after the writer acknowledged"), 3);
    assert_eq!(*rw.write().expect("usable after a dead writer"), 3);
}

#[test]
fn processes_step_in_lockstep_through_a_barrier() {
    const STEPS: u64 = 50;
    let test = "processes_step_in_lockstep_through_a_barrier";
    if let Some(base) = child_arg() {
        let bar = ShmBarrier::open(&format!("{base}-bar")).unwrap();
        let count = ShmCounter::open(&format!("{base}-count")).unwrap();
        for step in 0..STEPS {
            count.add(1);
            bar.wait_timeout(Duration::from_secs(20)).unwrap();
            assert!(count.get() >= 3 * (step + 1), "a process ran ahead of step {step}");
            bar.wait_timeout(Duration::from_secs(20)).unwrap();
        }
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let base = unique("barrier");
    let _bar = ShmBarrier::create(&format!("{base}-bar"), 3).unwrap();
    let count = ShmCounter::create(&format!("{base}-count"), 0).unwrap();
    let kids: Vec<_> = (0..3).map(|_| child(test, &base)).collect();
    for k in kids {
        assert!(wait_with_watchdog(k, Duration::from_secs(50)).success());
    }
    assert_eq!(count.get(), 3 * STEPS);
}

#[test]
fn auto_events_pass_one_waiter_per_set_manual_events_pass_all() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let auto = ShmEvent::create(&unique("auto"), EventMode::Auto).unwrap();
    auto.set();
    assert!(auto.try_wait());
    assert!(!auto.try_wait(), "an auto event resets as it lets one waiter pass");
    let manual = ShmEvent::create(&unique("manual"), EventMode::Manual).unwrap();
    let name = manual.name().to_owned();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let name = name.clone();
            std::thread::spawn(move || ShmEvent::open(&name).unwrap().wait_timeout(Duration::from_secs(10)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    manual.set();
    assert!(waiters.into_iter().all(|w| w.join().unwrap().is_ok()));
    assert!(manual.is_set());
    manual.reset();
    assert!(!manual.try_wait());
    assert!(matches!(
        ShmEvent::open(ShmCounter::create(&unique("kind"), 0).unwrap().name()),
        Err(shmkit::Error::WrongKind { .. })
    ));
}

/// A sender that sends and leaves while a receiver is between finding
/// the ring empty and looking for senders: its record is received, never
/// lost to an early `Disconnected`. (A fault point pauses the receiver in
/// that window for 100 ms, so the race is hit every time.)
#[test]
fn a_record_sent_just_before_the_last_sender_leaves_is_received() {
    let test = "a_record_sent_just_before_the_last_sender_leaves_is_received";
    if child_arg().is_some() {
        let q = ShmQueue::<u64>::create_unique(4).unwrap();
        let (rx, tx) = (q.receiver().unwrap(), q.sender().unwrap());
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30)); // lands in the receiver's pause
            tx.send(7).unwrap();
            drop(tx); // the last sender leaves right after its send
        });
        assert_eq!(rx.recv(), Ok(7), "the record sent before the last sender left");
        sender.join().unwrap();
        assert_eq!(rx.recv(), Err(RecvError::Disconnected), "then the stream ends");
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let out = common::child_command(test, "go", Some("queue-recv-found-empty")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

/// `ShmLock`, the bare lock bindings use: acquire and release as calls, a
/// holder's death told to every taker until one acknowledges it.
#[test]
fn a_bare_lock_reports_a_dead_holder_until_acknowledged() {
    use shmkit::sync::{AcquireError, NotHeld, ShmLock};
    let _w = Watchdog::new(Duration::from_secs(30));
    let lock = ShmLock::create(&unique("bare")).unwrap();
    assert!(!lock.is_locked());
    lock.acquire(None).unwrap();
    assert!(lock.is_locked());
    assert_eq!(lock.acquire(Some(Duration::from_millis(10))), Err(AcquireError::Deadlock));
    let name = lock.name().to_owned();
    let other = std::thread::spawn(move || {
        let l = ShmLock::open(&name).unwrap();
        (l.release(), l.acquire(Some(Duration::from_millis(20))))
    });
    assert_eq!(other.join().unwrap(), (Err(NotHeld), Err(AcquireError::Timeout)), "only its holder releases it");
    // Another handle of the same lock, on the holding thread, did not take it.
    let second = ShmLock::open(lock.name()).unwrap();
    assert_eq!((second.release(), second.acknowledge()), (Err(NotHeld), Err(NotHeld)));
    drop(second);
    assert!(lock.is_locked(), "still held through the first handle");
    lock.release().unwrap();
    assert_eq!(lock.release(), Err(NotHeld));
    // A thread that exits holding it: the kernel hands it on as owner-died.
    let name = lock.name().to_owned();
    std::thread::spawn(move || ShmLock::open(&name).unwrap().acquire(None).unwrap()).join().unwrap();
    assert_eq!(lock.acquire(None), Err(AcquireError::OwnerDied));
    lock.release().unwrap(); // unacknowledged
    assert_eq!(lock.acquire(None), Err(AcquireError::OwnerDied), "still told");
    lock.acknowledge().unwrap();
    lock.release().unwrap();
    assert_eq!(lock.acquire(Some(Duration::ZERO)), Ok(()));
    assert_eq!(lock.acknowledge(), Ok(()));
    lock.release().unwrap();
    assert_eq!(lock.acknowledge(), Err(NotHeld));
    assert!(ShmMutex::<u8>::open(lock.name()).is_ok(), "the same segment as a ShmMutex<u8>");
}
