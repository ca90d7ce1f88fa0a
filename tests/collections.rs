//! `ShmMap` and `ShmVec` between real processes: many writers, atomic
//! updates, writers SIGKILLed or stopped at random moments, and misuse.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{child_arg, spawn_child, unique, wait_with_watchdog, Watchdog};
use shmkit::collections::{FixedStr, Item, MapError, PushError, ShmMap, ShmVec};
use shmkit::Error;

/// A value whose halves must agree: a torn write shows.
type Checked = [u64; 8];

fn checked(x: u64) -> Checked {
    [x, !x, x, !x, x, !x, x, !x]
}

fn is_whole(v: &Checked) -> bool {
    v.chunks(2).all(|p| p[0] == v[0] && p[1] == !v[0])
}

/// Runs `test` as `n` child processes, child `i` told `ARG:i`, and waits
/// for all of them to succeed.
fn run_children(test: &str, arg: &str, n: usize) {
    let children: Vec<_> = (0..n).map(|i| spawn_child(test, &format!("{arg}:{i}"), Stdio::null())).collect();
    for child in children {
        assert!(wait_with_watchdog(child, Duration::from_secs(120)).success(), "a child of {test} failed");
    }
}

/// The child's argument, split at `:`.
fn parts(arg: &str) -> (String, u64) {
    let (name, i) = arg.rsplit_once(':').expect("NAME:INDEX");
    (name.to_owned(), i.parse().expect("an index"))
}

#[test]
fn two_writers_insert_many_distinct_keys_each_and_all_are_there() {
    let test = "two_writers_insert_many_distinct_keys_each_and_all_are_there";
    // A million each in the long tier.
    let each: u64 = common::tier(200_000, 1_000_000);
    if let Some(arg) = child_arg() {
        let (name, w) = parts(&arg);
        let map = ShmMap::<u64, u64>::open(&name).unwrap();
        for k in w * each..(w + 1) * each {
            assert_eq!(map.insert(k, 2 * k).unwrap(), None);
        }
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(300));
    let map = ShmMap::<u64, u64>::create(&unique("map-2x"), 2 * each as usize).unwrap();
    run_children(test, map.name(), 2);
    assert_eq!(map.len(), 2 * each as usize);
    let mut all = map.snapshot().unwrap();
    all.sort_unstable();
    assert_eq!(all.len(), 2 * each as usize);
    assert!(all.iter().enumerate().all(|(i, &(k, v))| k == i as u64 && v == 2 * k), "a key or value is wrong");
    assert_eq!(map.get(&12345).unwrap(), Some(24690));
    assert_eq!(map.get(&(2 * each)).unwrap(), None);
    assert_eq!(map.recoveries(), 0);
}

#[test]
fn concurrent_updates_from_two_processes_sum_exactly() {
    let test = "concurrent_updates_from_two_processes_sum_exactly";
    const EACH: u64 = 50_000;
    if let Some(arg) = child_arg() {
        let (name, _) = parts(&arg);
        let map = ShmMap::<u32, u64>::open(&name).unwrap();
        for i in 0..EACH {
            map.modify((i % 7) as u32, |n| Some(n.unwrap_or(0) + 1)).unwrap();
        }
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let map = ShmMap::<u32, u64>::create(&unique("map-upd"), 16).unwrap();
    run_children(test, map.name(), 2);
    let total: u64 = map.snapshot().unwrap().iter().map(|(_, n)| n).sum();
    assert_eq!(total, 2 * EACH, "every increment counted once");
    assert_eq!(map.len(), 7);
}

/// Writer for the kill tests: overwrites, removes and re-inserts keys
/// 1000..1050 with whole values until killed; never touches keys below 1000.
fn churn(name: &str) {
    let map = ShmMap::<u64, Checked>::open(name).unwrap();
    for round in 0u64.. {
        let k = 1000 + round % 50;
        match round % 3 {
            0 => drop(map.insert(k, checked(round)).unwrap()),
            1 => drop(map.modify(k, |_| Some(checked(round + 1))).unwrap()),
            _ => drop(map.remove(&k).unwrap()),
        }
    }
}

#[test]
fn a_writer_killed_at_random_moments_never_leaves_a_torn_or_lost_entry() {
    let test = "a_writer_killed_at_random_moments_never_leaves_a_torn_or_lost_entry";
    if let Some(arg) = child_arg() {
        return churn(&parts(&arg).0);
    }
    let _w = Watchdog::new(Duration::from_secs(300));
    // One stripe (a small map), so that every kill lands in the stripe the
    // next call takes; and a map of 64 stripes.
    let map = ShmMap::<u64, Checked>::create(&unique("map-kill"), 100).unwrap();
    let big = ShmMap::<u64, Checked>::create(&unique("map-kill-big"), 4000).unwrap();
    for (m, keys) in [(&map, 0..20u64), (&big, 0..1000u64)] {
        keys.for_each(|k| assert!(m.insert(k, checked(k)).unwrap().is_none()));
    }
    let mut rng = common::seeded_rng("map kills");
    let rounds = common::tier(40, 400);
    for round in 0..rounds {
        let m = if round % 2 == 0 { &map } else { &big };
        let mut child = spawn_child(test, &format!("{}:0", m.name()), Stdio::null());
        std::thread::sleep(Duration::from_micros(rng.below(3000) + 200));
        child.kill().unwrap();
        child.wait().unwrap();
        let all = m.snapshot().unwrap(); // repairs whatever the kill left
        let kept = if round % 2 == 0 { 20 } else { 1000 };
        assert_eq!(
            all.iter().filter(|(k, _)| *k < kept).count(),
            kept as usize,
            "round {round}: an untouched key is gone"
        );
        for (k, v) in &all {
            assert!(is_whole(v), "round {round}: key {k} has a torn value {v:?}");
            assert!(*k >= 1000 || *v == checked(*k), "round {round}: untouched key {k} changed");
        }
        assert_eq!(m.len(), all.len(), "round {round}: the count disagrees with the entries");
    }
    let repaired = map.recoveries() + big.recoveries();
    println!("{rounds} writers killed mid-churn: {repaired} stripes repaired, no entry torn or lost");
    assert!(repaired > 0, "no kill landed inside an operation: the test proved nothing");
}

#[test]
fn a_stopped_writer_holding_a_stripe_makes_a_timed_call_fail_not_hang() {
    let test = "a_stopped_writer_holding_a_stripe_makes_a_timed_call_fail_not_hang";
    if let Some(arg) = child_arg() {
        return churn(&parts(&arg).0);
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let made = ShmMap::<u64, Checked>::create(&unique("map-stop"), 100).unwrap();
    let map = ShmMap::<u64, Checked>::open(made.name()).unwrap().with_lock_timeout(Duration::from_millis(20));
    let mut child = spawn_child(test, &format!("{}:0", map.name()), Stdio::null());
    std::thread::sleep(Duration::from_millis(50));
    let mut timed_out = 0;
    for round in 0..300 {
        common::signal(child.id(), rustix::process::Signal::STOP).unwrap();
        std::thread::sleep(Duration::from_micros(300));
        let t = Instant::now();
        match map.get(&1000) {
            Ok(_) => {}
            Err(MapError::LockTimeout { .. }) => timed_out += 1,
            Err(e) => panic!("round {round}: {e}"),
        }
        assert!(t.elapsed() < Duration::from_millis(120), "round {round}: get took {:?}", t.elapsed());
        common::signal(child.id(), rustix::process::Signal::CONT).unwrap();
        std::thread::sleep(Duration::from_micros(300));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    println!("stopped the writer 300 times, {timed_out} of them inside the stripe's lock; no call waited");
    assert!(timed_out > 0, "no stop landed inside the lock: the test proved nothing");
    assert!(map.snapshot().is_ok(), "usable once the holder is gone");
}

#[test]
fn two_pushers_put_every_element_in_exactly_once() {
    let test = "two_pushers_put_every_element_in_exactly_once";
    const EACH: u64 = 300_000;
    if let Some(arg) = child_arg() {
        let (name, w) = parts(&arg);
        let list = ShmVec::<u64>::open(&name).unwrap();
        (w * EACH..(w + 1) * EACH).for_each(|x| assert!(list.push(x).is_ok()));
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let list = ShmVec::<u64>::create(&unique("vec-2"), 2 * EACH as usize).unwrap();
    run_children(test, list.name(), 2);
    let mut all = list.to_vec();
    all.sort_unstable();
    assert_eq!(all, (0..2 * EACH).collect::<Vec<_>>());
    assert!(matches!(list.push(0), Err(PushError::Full { value: 0, .. })), "full at capacity");
    assert_eq!(list.len(), 2 * EACH as usize, "a failed push takes no slot");
}

#[test]
fn a_pusher_killed_at_random_moments_never_leaves_a_torn_element() {
    let test = "a_pusher_killed_at_random_moments_never_leaves_a_torn_element";
    if let Some(arg) = child_arg() {
        let list = ShmVec::<Checked>::open(&parts(&arg).0).unwrap();
        for x in 0u64.. {
            if list.push(checked(x)).is_err() {
                std::thread::sleep(Duration::from_secs(60)); // full: wait for the kill
            }
        }
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let list = ShmVec::<Checked>::create(&unique("vec-kill"), 4_000_000).unwrap();
    let mut rng = common::seeded_rng("push kills");
    let rounds = common::tier(20, 200);
    for _ in 0..rounds {
        let mut child = spawn_child(test, &format!("{}:0", list.name()), Stdio::null());
        std::thread::sleep(Duration::from_micros(rng.below(4000) + 500));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let complete = list.to_vec();
    assert!(complete.iter().all(is_whole), "a torn element is visible");
    let holes = list.len() - complete.len();
    println!("{rounds} pushers killed: {} elements whole, {holes} slots left empty by a dead pusher", complete.len());
    assert!(holes <= rounds, "more empty slots ({holes}) than kills");
    // A reader following the list can tell each of them from a push under
    // way: a dead pusher's slot is a hole, never pending.
    let told: Vec<Item<Checked>> = (0..list.len()).map(|i| list.item(i)).collect();
    assert_eq!(told.iter().filter(|t| matches!(t, Item::Hole)).count(), holes, "every empty slot is a hole");
    assert!(!told.iter().any(|t| matches!(t, Item::Pending)), "no slot of a dead pusher reads as pending");
}

/// A reader tailing a list with `item(next)` must not stall on the slot of
/// a pusher killed mid-push, nor skip the slot of one merely stopped.
#[test]
fn a_tailing_reader_skips_a_dead_pushers_hole_and_waits_for_a_stopped_one() {
    let test = "a_tailing_reader_skips_a_dead_pushers_hole_and_waits_for_a_stopped_one";
    if let Some(arg) = child_arg() {
        let list = ShmVec::<u64>::open(&parts(&arg).0).unwrap();
        list.push(1).unwrap(); // dies inside: SHMKIT_FAULT_INJECT=vec-push-claimed
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let list = ShmVec::<u64>::create(&unique("vec-tail"), 16).unwrap();
    let status = common::child_command(test, &format!("{}:0", list.name()), Some("vec-push-claimed"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "the pusher died mid-push");
    list.push(2).unwrap();
    let mut got = Vec::new();
    let mut next = 0;
    let start = Instant::now();
    while got.is_empty() && start.elapsed() < Duration::from_secs(5) {
        match list.item(next) {
            Item::Ready(x) => {
                got.push(x);
                next += 1;
            }
            Item::Hole => next += 1,
            Item::Pending | Item::Vacant => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    assert_eq!((got, list.item(0)), (vec![2], Item::Hole), "the dead pusher's slot is skipped, not waited for");
}

/// A pusher (and creator) that forked before it died mid-push: its forked
/// child, still alive, must not keep the dead pusher's slot `Pending` nor
/// its creator "alive" (they would share its open file, and its locks).
#[test]
fn a_dead_pusher_that_forked_leaves_a_hole_and_a_dead_creator() {
    let test = "a_dead_pusher_that_forked_leaves_a_hole_and_a_dead_creator";
    if let Some(arg) = child_arg() {
        let list = ShmVec::<u64>::create(&parts(&arg).0, 16).unwrap();
        // SAFETY: the forked child only sleeps and _exits (async-signal-safe).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above (close, sleep and _exit are async-signal-safe);
            // closing its standard streams lets the test read its parent's
            // output to the end.
            unsafe {
                (0..3).for_each(|fd| _ = libc::close(fd));
                libc::sleep(20);
                libc::_exit(0)
            };
        }
        println!("forked {pid}");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        list.push(1).unwrap(); // dies inside: SHMKIT_FAULT_INJECT=vec-push-claimed
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("vec-fork");
    let out = common::child_command(test, &format!("{name}:0"), Some("vec-push-claimed")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let after = stdout.split_once("forked ").map(|(_, rest)| rest.split_whitespace().next().unwrap_or(""));
    let forked = after.and_then(|p| p.parse().ok());
    let forked: u32 = forked.unwrap_or_else(|| panic!("no pid in: {stdout}"));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(9), "died mid-push: {stdout}");
    let list = ShmVec::<u64>::open(&name).unwrap();
    let (slot, creator_alive) = (list.item(0), shmkit::admin::inspect(&name).unwrap().creator.unwrap().is_alive());
    let child_alive = common::alive(forked);
    let _ = common::signal(forked, rustix::process::Signal::KILL);
    assert!(child_alive, "the forked child was still alive while this was judged");
    assert_eq!(slot, Item::Hole, "the dead pusher's slot, while its forked child lives");
    assert!(!creator_alive, "the creator is dead, whatever its forked child holds");
    drop(list);
    let removed = shmkit::admin::Gc::new().prefix(&name).run().unwrap();
    assert_eq!(removed, std::slice::from_ref(&name), "garbage while the forked child lives");
}

/// `len` must not stay wrong after a writer dies between making an entry
/// visible and counting it: `while !m.is_empty()` must end.
#[test]
fn a_writer_killed_before_it_counts_an_entry_never_leaves_len_wrong() {
    let test = "a_writer_killed_before_it_counts_an_entry_never_leaves_len_wrong";
    if let Some(arg) = child_arg() {
        let map = ShmMap::<u64, u64>::open(&parts(&arg).0).unwrap();
        let _ = map.remove(&7); // dies inside: SHMKIT_FAULT_INJECT=map-before-count
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let map = ShmMap::<u64, u64>::create(&unique("map-len"), 100).unwrap();
    map.insert(7, 1).unwrap();
    let status = common::child_command(test, &format!("{}:0", map.name()), Some("map-before-count"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "the writer died mid-remove");
    assert_eq!(map.len(), 0, "the removal was visible, and len() says so without another call first");
    assert!(map.is_empty());
    assert_eq!(map.recoveries(), 1, "len() repaired the stripe");
}

#[test]
fn misuse_gets_clear_errors() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let map = ShmMap::<u64, u64>::create(&unique("map-misuse"), 10).unwrap();
    let e = ShmMap::<u64, f64>::open(map.name()).unwrap_err();
    assert!(matches!(e, Error::WrongType { .. }), "{e}");
    assert!(e.to_string().contains("holds key <u8, value <u8") && e.to_string().contains("value <f8"), "{e}");
    assert!(matches!(ShmVec::<u64>::open(map.name()), Err(Error::WrongKind { .. })));
    assert!(matches!(ShmMap::<u64, u64>::create("", 10), Err(Error::InvalidName { .. })));
    assert!(matches!(ShmMap::<u64, u64>::create(&unique("map-zero"), 0), Err(Error::InvalidArgument(_))));
    assert!(ShmMap::<u64, [u8; 4096]>::create(&unique("map-huge"), usize::MAX / 2).is_err());
    assert!(ShmVec::<u64>::create(&unique("vec-huge"), usize::MAX / 4).is_err());
    // Inside an update, the map is locked: using it is refused, not a deadlock.
    let mut inner = None;
    map.modify(1, |_| {
        inner = Some(map.get(&2));
        Some(5)
    })
    .unwrap();
    assert!(matches!(inner, Some(Err(MapError::InModify))), "{inner:?}");
    assert_eq!(map.get(&1).unwrap(), Some(5), "and the map works on after it");
    // Full: a tiny map takes its capacity, then refuses with advice.
    let tiny = ShmMap::<u64, u64>::create(&unique("map-tiny"), 1).unwrap();
    let mut inserted = 0;
    let err = loop {
        match tiny.insert(inserted, 0) {
            Ok(_) => inserted += 1,
            Err(e) => break e,
        }
    };
    assert!(inserted >= 1 && matches!(err, MapError::Full { .. }), "{err}");
    assert!(err.to_string().contains("larger capacity"), "{err}");
    let list = ShmVec::<u32>::create(&unique("vec-misuse"), 2).unwrap();
    assert!(matches!(ShmVec::<u64>::open(list.name()), Err(Error::WrongType { .. })));
    assert_eq!(list.get(0), None);
}

#[test]
fn string_keys_round_trip_and_entries_come_back_through_any_handle() {
    let _w = Watchdog::new(Duration::from_secs(60));
    type Name = FixedStr<32>;
    let map = ShmMap::<Name, f64>::create(&unique("map-str"), 100).unwrap();
    let other = ShmMap::<Name, f64>::open(map.name()).unwrap();
    map.insert(Name::new("a.npy").unwrap(), 1.5).unwrap();
    other.insert(Name::new("b.npy").unwrap(), 2.5).unwrap();
    assert_eq!(map.get(&Name::new("b.npy").unwrap()).unwrap(), Some(2.5));
    assert_eq!(other.remove(&Name::new("a.npy").unwrap()).unwrap(), Some(1.5));
    assert_eq!(map.len(), 1);
    let mut names: Vec<String> = map.snapshot().unwrap().iter().map(|(k, _)| k.as_str().unwrap().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["b.npy"]);
    let info = shmkit::admin::inspect(map.name()).unwrap();
    let c = info.collection.expect("a map's summary");
    assert_eq!((info.kind, c.len, c.capacity), (shmkit::admin::SegmentKind::Map, 1, 100));
    let types: Vec<(&str, &str)> = info.types.iter().map(|(r, t)| (r.as_str(), t.as_str())).collect();
    assert_eq!(types, [("key", "|S32"), ("value", "<f8")], "numpy's dtypes, as Python will read them");
    let _ = c;
}

#[test]
fn the_manager_example_prints_and_checks_the_seeds_dict_and_list() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let out = std::process::Command::new(common::example("manager")).args(["--keys", "20000"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Dict: {0: 0, 1: 2, 2: 4, 3: 6, 4: 8, 5: 10, 6: 12, 7: 14, 8: 16, 9: 18}"), "{text}");
    assert!(text.contains("'processed_9'") && text.contains("20000 keys by 4 helpers"), "{text}");
}
