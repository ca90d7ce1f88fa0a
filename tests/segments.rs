//! The segment core across real processes: kinds checked for every pair,
//! removal that never hits a namesake, gc that never removes a live or
//! persistent segment, liveness across PID namespaces.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{child_arg, shm_exists, spawn_child, unique, wait_with_watchdog, ShmFile, Watchdog};
use ndarray::Ix1;
use shmkit::admin::SegmentKind;
use shmkit::collections::{ShmMap, ShmVec};
use shmkit::stream::{Policy, Publisher, Subscriber};
use shmkit::sync::{EventMode, ShmBarrier, ShmCounter, ShmEvent, ShmMutex, ShmQueue, ShmRwLock};
use shmkit::{Error, SharedArray};

/// Creates a segment of `kind` named `name`; the handle keeps it alive.
fn create(kind: SegmentKind, name: &str) -> Box<dyn std::any::Any> {
    match kind {
        SegmentKind::Array => Box::new(SharedArray::<u8, Ix1>::create(name, 64).unwrap()),
        SegmentKind::Mutex => Box::new(ShmMutex::create(name, 0u64).unwrap()),
        SegmentKind::RwLock => Box::new(ShmRwLock::create(name, 0u64).unwrap()),
        SegmentKind::Event => Box::new(ShmEvent::create(name, EventMode::Auto).unwrap()),
        SegmentKind::Barrier => Box::new(ShmBarrier::create(name, 2).unwrap()),
        SegmentKind::Counter => Box::new(ShmCounter::create(name, 0).unwrap()),
        SegmentKind::Queue => Box::new(ShmQueue::<u64>::create(name, 8).unwrap()),
        SegmentKind::Map => Box::new(ShmMap::<u64, u64>::create(name, 8).unwrap()),
        SegmentKind::List => Box::new(ShmVec::<u64>::create(name, 8).unwrap()),
        SegmentKind::Stream => Box::new(Publisher::<u64, Ix1>::create(name, 4, 4, Policy::Overwrite).unwrap()),
        other => panic!("no public type for {other}"),
    }
}

/// Opens `name` as `kind`, returning only the error.
fn open_as(kind: SegmentKind, name: &str) -> Result<(), Error> {
    match kind {
        SegmentKind::Array => SharedArray::<u8, Ix1>::open(name).map(drop),
        SegmentKind::Mutex => ShmMutex::<u64>::open(name).map(drop),
        SegmentKind::RwLock => ShmRwLock::<u64>::open(name).map(drop),
        SegmentKind::Event => ShmEvent::open(name).map(drop),
        SegmentKind::Barrier => ShmBarrier::open(name).map(drop),
        SegmentKind::Counter => ShmCounter::open(name).map(drop),
        SegmentKind::Queue => ShmQueue::<u64>::open(name).map(drop),
        SegmentKind::Map => ShmMap::<u64, u64>::open(name).map(drop),
        SegmentKind::List => ShmVec::<u64>::open(name).map(drop),
        SegmentKind::Stream => Subscriber::<u64, Ix1>::open(name).map(drop),
        other => panic!("no public type for {other}"),
    }
}

#[test]
fn opening_as_the_wrong_kind_fails_for_every_pair() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let kinds: Vec<SegmentKind> = SegmentKind::all().filter(|k| *k != SegmentKind::Pool).collect();
    let mut pairs = 0;
    for &made in &kinds {
        let name = unique(&format!("kind-{made}"));
        let _seg = create(made, &name);
        assert_eq!(shmkit::admin::inspect(&name).unwrap().kind, made);
        for &asked in &kinds {
            match (open_as(asked, &name), asked == made) {
                (Ok(()), true) => {}
                (Err(Error::WrongKind { expected, found, .. }), false) if expected == asked && found == made => {
                    pairs += 1
                }
                (other, _) => panic!("{made} opened as {asked}: {other:?}"),
            }
        }
    }
    assert_eq!(pairs, kinds.len() * (kinds.len() - 1));
}

#[test]
fn an_owner_never_removes_a_namesake_and_neither_does_gc() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("namesake");
    let old = SharedArray::<u8, Ix1>::create(&name, 8).unwrap();
    shmkit::admin::unlink(&name).unwrap(); // e.g. `shmkit rm` or another program
    let new = SharedArray::<u16, Ix1>::create(&name, 8).unwrap();
    drop(old);
    assert!(shm_exists(&name), "the old owner's drop removed the new segment");
    assert!(!shmkit::admin::Gc::new().prefix(&name).run().unwrap().contains(&name));
    assert_eq!(SharedArray::<u16, Ix1>::open(&name).unwrap().len(), 8);
    let stale = SharedArray::<u8, Ix1>::create(&unique("namesake-b"), 8).unwrap();
    let stale_name = stale.name().to_owned();
    shmkit::admin::unlink(&stale_name).unwrap();
    let _other = SharedArray::<u8, Ix1>::create(&stale_name, 8).unwrap();
    assert!(matches!(stale.remove_name(), Err(Error::Replaced { .. })), "close/unlink report the namesake");
    assert!(shm_exists(&stale_name));
    drop(new);
    assert!(!shm_exists(&name));
}

#[test]
fn gc_spares_segments_that_are_persisted_just_before_their_creator_exits() {
    let test = "gc_spares_segments_that_are_persisted_just_before_their_creator_exits";
    if let Some(base) = child_arg() {
        for i in 0..40 {
            let a = SharedArray::<u8, Ix1>::create(&format!("{base}-{i}"), 4096).unwrap();
            std::thread::sleep(Duration::from_micros(100 * (i % 7)));
            a.persist().unwrap();
        }
        return; // exits with every segment persisted, racing the collector
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let base = unique("persist-race");
    let names: Vec<String> = (0..40).map(|i| format!("{base}-{i}")).collect();
    let _cleanup: Vec<ShmFile> = names.iter().map(|n| ShmFile(n.clone())).collect();
    let mut creator = spawn_child(test, &base, Stdio::null());
    let start = Instant::now();
    let mut passes = 0;
    while creator.try_wait().unwrap().is_none() || passes < 50 {
        let removed = shmkit::admin::Gc::new().prefix(&base).run().unwrap();
        assert!(!removed.iter().any(|r| r.starts_with(&base)), "gc removed a persisted segment: {removed:?}");
        passes += 1;
        assert!(start.elapsed() < Duration::from_secs(60));
    }
    assert!(creator.wait().unwrap().success());
    for n in &names {
        assert!(shm_exists(n), "{n} is gone");
        assert!(shmkit::admin::inspect(n).unwrap().persistent);
    }
    assert!(!shmkit::admin::Gc::new().prefix(&base).run().unwrap().iter().any(|r| r.starts_with(&base)));
}

#[test]
fn gc_removes_what_a_dead_creator_left_and_nothing_of_a_live_one() {
    let test = "gc_removes_what_a_dead_creator_left_and_nothing_of_a_live_one";
    if let Some(name) = child_arg() {
        let _a = SharedArray::<u8, Ix1>::create(&name, 16).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("gc-live");
    let _cleanup = ShmFile(name.clone());
    let mut child = spawn_child(test, &name, Stdio::null());
    let start = Instant::now();
    while !shm_exists(&name) {
        assert!(start.elapsed() < Duration::from_secs(30), "the child never created {name}");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(shmkit::admin::inspect(&name).unwrap().creator.unwrap().is_alive());
    assert!(!shmkit::admin::Gc::new().prefix(&name).run().unwrap().contains(&name));
    child.kill().unwrap();
    child.wait().unwrap();
    if let Ok(info) = shmkit::admin::inspect(&name) {
        assert_eq!(info.creator.unwrap().presence, shmkit::admin::Presence::Gone);
    }
    shmkit::admin::Gc::new().prefix(&name).run().unwrap();
    assert!(!shm_exists(&name));
}

#[test]
fn a_creator_in_another_pid_namespace_is_alive_to_gc_until_it_exits() {
    let test = "a_creator_in_another_pid_namespace_is_alive_to_gc_until_it_exits";
    if let Some(name) = child_arg() {
        assert_eq!(std::process::id(), 1, "this child runs as pid 1 of a new PID namespace");
        let _a = SharedArray::<u8, Ix1>::create(&name, 16).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("pidns");
    let _cleanup = ShmFile(name.clone());
    let exe = std::env::current_exe().unwrap();
    // `unshare --pid --fork` (util-linux) needs CAP_SYS_ADMIN: CI runs as root.
    let mut ns = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("SHMKIT_TEST_CHILD", &name)
        .stdout(Stdio::null())
        .spawn()
        .expect("unshare (util-linux) is needed to test PID namespaces");
    let start = Instant::now();
    while !shm_exists(&name) {
        if let Some(status) = ns.try_wait().unwrap() {
            panic!("this machine forbids `unshare --pid` ({status}): PID namespaces are not covered here");
        }
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(2));
    }
    let creator = shmkit::admin::inspect(&name).unwrap().creator.unwrap();
    assert_eq!(creator.pid, 1, "the pid it recorded is its own namespace's");
    assert!(!creator.in_this_namespace());
    assert!(creator.is_alive(), "pid 1 here is init, but liveness never looks at pids");
    assert!(
        !shmkit::admin::Gc::new().prefix(&name).run().unwrap().contains(&name),
        "gc removed a live creator's segment"
    );
    ns.kill().unwrap(); // --kill-child takes the namespace's pid 1 with it
    let status = wait_with_watchdog(ns, Duration::from_secs(10));
    assert!(!status.success());
    let start = Instant::now();
    while shmkit::admin::inspect(&name).is_ok_and(|i| i.creator.unwrap().is_alive()) {
        assert!(start.elapsed() < Duration::from_secs(10), "the namespace's creator outlived unshare");
        std::thread::sleep(Duration::from_millis(5));
    }
    shmkit::admin::Gc::new().prefix(&name).run().unwrap();
    assert!(!shm_exists(&name));
}

/// A process forked after its parent made a segment records itself, not
/// its parent, as the creator of the segments it makes: shmkit keeps a
/// process's start time and PID namespace once read, and a fork must make
/// the child read its own.
#[test]
fn a_forked_child_records_itself_as_creator() {
    let test = "a_forked_child_records_itself_as_creator";
    if let Some(arg) = child_arg() {
        let (first, second) = arg.split_once(':').unwrap();
        let parent = SharedArray::<u8, Ix1>::create(first, 8).unwrap(); // reads and keeps them
        let mine = shmkit::admin::inspect(first).unwrap().creator.unwrap();
        // Start times count clock ticks (10 ms): a child started in the
        // same tick would record the same value, right or wrong.
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: this process runs this test alone; the child makes and
        // removes one segment, reports through its exit status and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match SharedArray::<u8, Ix1>::create(second, 8) {
                Ok(a) => {
                    let c = shmkit::admin::inspect(second).unwrap().creator.unwrap();
                    drop(a);
                    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
                    let own: u64 =
                        stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().parse().unwrap();
                    i32::from(c.pid != std::process::id())
                        + 2 * i32::from(c.start_time != own)
                        + 4 * i32::from(c.start_time == mine.start_time)
                }
                Err(_) => 8,
            };
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        drop(parent);
        assert!(libc::WIFEXITED(status), "the forked child died: {status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: parent's pid, 2: not its own start time, 4: parent's start time, 8: no segment"
        );
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let (first, second) = (unique("fork-creator-a"), unique("fork-creator-b"));
    let _cleanup = (ShmFile(first.clone()), ShmFile(second.clone()));
    let status =
        wait_with_watchdog(spawn_child(test, &format!("{first}:{second}"), Stdio::null()), Duration::from_secs(30));
    assert!(status.success(), "the child's checks failed: {status}");
    assert!(!shm_exists(&first) && !shm_exists(&second));
}

/// Runs this test as a child told `arg`, dying (SIGKILL) at fault point
/// `point` if given; returns once it has ended, and how.
fn run_dying_at(test: &str, arg: &str, point: Option<&str>) -> std::process::ExitStatus {
    let child = common::child_command(test, arg, point).stdout(Stdio::null()).spawn().unwrap();
    wait_with_watchdog(child, Duration::from_secs(30))
}

/// Entries of `/dev/shm` that name `name` or a removal of it.
fn traces(name: &str) -> Vec<String> {
    common::dev_shm().into_iter().filter(|e| e == name || (e.starts_with("shmkit-rm-") && e.ends_with(name))).collect()
}

/// A removal killed at each of its steps (before it starts, after moving
/// the name aside), by each remover (`shmkit::remove`, an owner's drop,
/// gc), leaves nothing that one gc does not remove.
#[test]
fn a_removal_killed_at_any_step_leaves_nothing_one_gc_does_not_remove() {
    let test = "a_removal_killed_at_any_step_leaves_nothing_one_gc_does_not_remove";
    if let Some(arg) = child_arg() {
        let (who, name) = arg.split_once(':').unwrap();
        match who {
            "rm" => drop(shmkit::admin::remove(name)),
            "owner" => drop(SharedArray::<u8, Ix1>::create(name, 4096).unwrap()),
            "creator" => std::mem::forget(SharedArray::<u8, Ix1>::create(name, 4096).unwrap()), // exits: garbage
            _ => drop(shmkit::admin::Gc::new().prefix(name).run()),
        }
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let mut cases = 0;
    for point in ["remove-start", "remove-after-aside"] {
        for who in ["rm", "owner", "gc"] {
            let name = unique("rm-step");
            match who {
                "rm" => {
                    let kept = SharedArray::<u8, Ix1>::create(&name, 4096).unwrap();
                    kept.persist().unwrap(); // `shmkit rm` of a persisted array: the reported leak
                }
                "gc" => assert!(run_dying_at(test, &format!("creator:{name}"), None).success()),
                _ => {}
            }
            let status = run_dying_at(test, &format!("{who}:{name}"), Some(point));
            let killed = std::os::unix::process::ExitStatusExt::signal(&status) == Some(9);
            let left = traces(&name);
            shmkit::admin::Gc::new().prefix(&name).run().unwrap();
            let after = traces(&name);
            // A removal killed before it began leaves a persisted array as it
            // was (not garbage: rm it again); anything else is gone.
            let expect: Vec<String> = match (who, point) {
                ("rm", "remove-start") => vec![name.clone()],
                _ => vec![],
            };
            assert_eq!(after, expect, "{who} killed at {point} (killed: {killed}; before gc: {left:?})");
            if point == "remove-after-aside" {
                assert!(
                    killed && left.iter().any(|e| e.starts_with("shmkit-rm-")),
                    "{who}: the kill landed mid-removal: {left:?}"
                );
            }
            if !after.is_empty() {
                shmkit::admin::remove(&name).unwrap();
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 6);
}

/// A live namesake moved aside by a removal that raced it, its remover
/// killed before moving it back (simulated: the rename by hand), gets its
/// name back from gc: attachers find it again.
#[test]
fn a_live_namesake_left_aside_by_a_killed_removal_gets_its_name_back_from_gc() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let name = unique("namesake");
    let live = SharedArray::<u8, Ix1>::create(&name, 64).unwrap();
    let other_inode = 1u64; // the file the dead remover meant: not this one
    let aside = format!("shmkit-rm-{other_inode:016x}-0badcafe-{name}");
    std::fs::rename(format!("/dev/shm/{name}"), format!("/dev/shm/{aside}")).unwrap();
    assert!(matches!(SharedArray::<u8, Ix1>::open(&name), Err(Error::NotFound { .. })), "nameless meanwhile");
    let listed = shmkit::admin::list().unwrap().into_iter().find(|l| l.name == aside).unwrap();
    assert_eq!(listed.removing.as_deref(), Some(name.as_str()), "ls tells an unfinished removal");
    let removed = shmkit::admin::Gc::new().prefix(&name).run().unwrap();
    assert!(removed.is_empty(), "a live namesake is never removed: {removed:?}");
    assert!(SharedArray::<u8, Ix1>::open(&name).is_ok(), "it has its name back");
    assert!(!shm_exists(&aside));
    drop(live);
    assert!(!shm_exists(&name), "and its owner removes it as usual");
}

/// A namesake a killed removal left aside, whose name a third segment
/// took meanwhile, cannot get its name back: once its own creator is gone
/// it is garbage like any segment, and gc removes it (and nothing else).
#[test]
fn a_stranded_namesake_whose_creator_died_is_collected_by_gc() {
    let test = "a_stranded_namesake_whose_creator_died_is_collected_by_gc";
    if let Some(name) = child_arg() {
        std::mem::forget(SharedArray::<u8, Ix1>::create(&name, 16).unwrap()); // its creator exits: garbage
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(30));
    let name = unique("stranded");
    assert!(run_dying_at(test, &name, None).success());
    let aside = format!("shmkit-rm-{:016x}-0badcafe-{name}", 1u64);
    std::fs::rename(format!("/dev/shm/{name}"), format!("/dev/shm/{aside}")).unwrap();
    let third = SharedArray::<u8, Ix1>::create(&name, 8).unwrap(); // takes the name
    let removed = shmkit::admin::Gc::new().prefix(&name).run().unwrap();
    assert_eq!(removed, std::slice::from_ref(&aside), "the stranded garbage, nothing else");
    assert!(!shm_exists(&aside));
    assert!(SharedArray::<u8, Ix1>::open(&name).is_ok(), "the third segment keeps its name");
    drop(third);
    assert!(traces(&name).is_empty(), "{:?}", traces(&name));
}
