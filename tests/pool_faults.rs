//! The pool's misuse and fault holes found in review, each pinned by a test
//! in real processes: a timeout behind large arguments, a forgotten
//! `shmkit::init`, dropped handles and iterators, `Duration::MAX`.

mod common;
#[path = "common/tasks.rs"]
mod tasks;

use std::time::{Duration, Instant};

use common::{run_child, Watchdog};
use shmkit::pool::{PoolBuilder, PoolError, TaskError};
use shmkit::Pool;
use tasks::*;

fn pool(test: &str, helpers: usize) -> PoolBuilder {
    Pool::builder().tasks(register).helpers(helpers).in_test(test)
}

#[test]
fn a_timeout_fires_even_when_large_arguments_fill_the_helpers_socket() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let test = "a_timeout_fires_even_when_large_arguments_fill_the_helpers_socket";
    let pool = pool(test, 1).build().unwrap();
    let mut args: Vec<Vec<u8>> = (0..40).map(|_| vec![0u8; 200_000]).collect();
    args[0][0] = 1; // this one hangs for 20 s
    let limit = Duration::from_millis(300);
    let mut results = Vec::new();
    let unordered = pool.batch().timeout(limit).map_unordered(big_arg, args); // encodes 8 MB first
    let start = Instant::now();
    for (i, r) in unordered {
        results.push((i, r, start.elapsed()));
    }
    let (_, hung, at) = results.iter().find(|(i, _, _)| *i == 0).expect("a result for the hung task");
    assert_eq!(hung, &Err(TaskError::TimedOut(limit)));
    assert!(*at < limit + Duration::from_millis(100), "TimedOut came after {at:?}");
    assert_eq!(results.len(), 40);
    assert!(results.iter().filter(|(i, _, _)| *i != 0).all(|(_, r, _)| r == &Ok(200_000)), "{results:?}");
    println!("hung task: TimedOut after {at:?}; all 40 results in {:?}", start.elapsed());
}

/// The parent of process `p`.
fn parent_of(p: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}

/// The processes whose parent is `pid`, and theirs, and so on.
fn descendants(pid: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.remove(0);
    out
}

/// The pool of `test`, its helpers started through `timeout 120` (a
/// launcher that forks its program and waits for it) when `launcher`.
fn pool_via(test: &str, helpers: usize, launcher: bool) -> PoolBuilder {
    if !launcher {
        return pool(test, helpers);
    }
    let exe = std::env::current_exe().unwrap();
    Pool::builder().tasks(register).helpers(helpers).program("timeout").arg("120").arg(exe).in_test(test)
}

#[test]
fn forgetting_init_is_a_clear_error_and_never_a_fork_bomb() {
    // No shmkit::init in this test, on purpose. It runs its coordinator as a
    // child process (so that only that pool's processes are counted); the
    // helpers re-run this test too, reach build() and must stop there, also
    // behind a launcher (then each helper is two processes).
    let test = "forgetting_init_is_a_clear_error_and_never_a_fork_bomb";
    let helpers = 4;
    if let Some(how) = common::child_arg() {
        let built = pool_via(test, helpers, how == "launcher").start_timeout(Duration::from_secs(20)).build();
        let Err(err) = built else { panic!("a pool of helpers without init was built") };
        assert!(matches!(err, PoolError::NotInitialized { .. }), "{err}");
        assert!(err.to_string().contains("shmkit::init"), "{err}");
        println!("forgotten init: {err}");
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let mut coordinators = Vec::new();
    for (how, per_helper) in [("direct", 1), ("launcher", 2)] {
        let start = Instant::now();
        let mut coordinator = common::spawn_child(test, how, std::process::Stdio::piped());
        coordinators.push(coordinator.id());
        let mut most = 0;
        let status = loop {
            most = most.max(descendants(coordinator.id()).len());
            if let Some(status) = coordinator.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{how}: the coordinator hangs");
            std::thread::sleep(Duration::from_micros(300));
        };
        let mut out = String::new();
        std::io::Read::read_to_string(coordinator.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(status.success() && out.contains("1 passed"), "{how}: {status}:\n{out}");
        assert!(most <= helpers * per_helper, "{how}: {most} processes at once for a pool of {helpers}");
        println!(
            "{how}: {} (after {:?}, at most {most} processes at once)",
            out.lines().find(|l| l.starts_with("forgotten")).unwrap_or(""),
            start.elapsed()
        );
    }
    for pid in coordinators {
        shmkit::admin::Gc::new().creator(pid).run().unwrap(); // the child's pool segment, if its drop did not run
    }
}

/// Behind a launcher that puts the helper in a PID namespace of its own
/// (`unshare --pid --fork`, as bwrap and firejail do), the helper's own pid
/// (1 or 2 there) is not ours: the pool must name, time out and kill the
/// helper by the pid the kernel gives it here, never by that number.
#[test]
fn a_helper_in_its_own_pid_namespace_is_named_and_killed_by_our_pid_for_it() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let test = "a_helper_in_its_own_pid_namespace_is_named_and_killed_by_our_pid_for_it";
    let exe = std::env::current_exe().unwrap();
    // `unshare --pid` needs CAP_SYS_ADMIN: CI runs as root.
    let pool = Pool::builder()
        .tasks(register)
        .helpers(1)
        .program("unshare")
        .arg("--pid")
        .arg("--fork")
        .arg("--kill-child")
        .arg(exe)
        .in_test(test)
        .build()
        .unwrap();
    let inside = pool.submit(pid, ()).wait().unwrap();
    let helper = pool.helper_pids()[0];
    assert!(inside <= 2, "the helper numbers itself inside its namespace: {inside}");
    assert_ne!(helper, inside, "the pool uses our number for it");
    let exe_of = std::fs::read_link(format!("/proc/{helper}/exe")).unwrap();
    assert_eq!(exe_of, std::env::current_exe().unwrap(), "that number is the helper's");
    let limit = Duration::from_millis(200);
    assert_eq!(pool.batch().timeout(limit).submit(sleep_ms, 20_000).wait(), Err(TaskError::TimedOut(limit)));
    assert!(
        !common::alive(helper) || {
            std::thread::sleep(Duration::from_millis(500));
            !common::alive(helper)
        },
        "the timed-out helper was killed"
    );
    assert_eq!(pool.submit(square, 9).wait(), Ok(81), "a replacement serves");
}

#[test]
fn a_launcher_between_pool_and_helper_passes_the_socket_on() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let test = "a_launcher_between_pool_and_helper_passes_the_socket_on";
    let pool = pool_via(test, 2, true).build().unwrap();
    let squares: Vec<u64> = pool.map(square, 0..20u64).into_iter().map(Result::unwrap).collect();
    assert_eq!(squares, (0..20u64).map(|x| x * x).collect::<Vec<_>>());
    let limit = Duration::from_millis(200);
    assert_eq!(pool.batch().timeout(limit).submit(sleep_ms, 20_000).wait(), Err(TaskError::TimedOut(limit)));
    assert_eq!(pool.submit(square, 9).wait(), Ok(81), "a replacement serves behind its launcher too");
    // The pool names the helpers themselves, not their launchers.
    let helpers = pool.helper_pids();
    let launchers: Vec<u32> = helpers.iter().map(|&h| parent_of(h).expect("a helper's parent")).collect();
    let trees: Vec<Vec<u32>> = launchers.iter().map(|&l| descendants(l)).collect();
    assert!(
        trees.iter().zip(&helpers).all(|(t, h)| *t == [*h]),
        "one helper behind each launcher: {helpers:?} {trees:?}"
    );
    let mut all = helpers.clone();
    all.extend(&launchers);
    drop(pool);
    let start = Instant::now();
    while all.iter().any(|&p| common::alive(p)) {
        assert!(start.elapsed() < Duration::from_secs(10), "left behind: {all:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("behind `timeout`: 20 squares, a timeout, a replacement; launchers and helpers {all:?} gone");
}

#[test]
fn a_dropped_handle_cancels_its_task_and_frees_its_helper() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_dropped_handle_cancels_its_task_and_frees_its_helper", 1).build().unwrap();
    let busy = pool.submit(sleep_ms, 15_000);
    std::thread::sleep(Duration::from_millis(100)); // it is running now
    drop(busy);
    let start = Instant::now();
    assert_eq!(pool.submit(square, 12).wait(), Ok(144));
    assert!(start.elapsed() < Duration::from_secs(1), "the next task waited {:?}", start.elapsed());
    // Queued, never started: dropped too.
    let queued: Vec<_> = (0..5).map(|_| pool.submit(sleep_ms, 15_000)).collect();
    drop(queued);
    let start = Instant::now();
    assert_eq!(pool.submit(square, 3).wait(), Ok(9));
    assert!(start.elapsed() < Duration::from_secs(1), "the next task waited {:?}", start.elapsed());
    // A detached task runs on.
    let marker = pool.submit(sleep_ms, 200);
    marker.detach();
    let start = Instant::now();
    assert_eq!(pool.submit(square, 4).wait(), Ok(16));
    assert!(start.elapsed() >= Duration::from_millis(150), "the detached task was cancelled");
}

#[test]
fn a_dropped_unordered_map_cancels_what_is_left() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_dropped_unordered_map_cancels_what_is_left", 2).build().unwrap();
    let mut results = pool.map_unordered(sleep_ms, [1, 15_000, 15_000, 15_000, 15_000, 15_000]);
    assert_eq!(results.next().map(|(i, r)| (i, r.unwrap())), Some((0, 1)));
    drop(results);
    let start = Instant::now();
    assert_eq!(pool.map(square, 0..4).into_iter().collect::<Result<Vec<_>, _>>().unwrap(), [0, 1, 4, 9]);
    assert!(start.elapsed() < Duration::from_secs(1), "the next map waited {:?}", start.elapsed());
    let handles: Vec<_> = (0..4).map(|_| pool.submit(sleep_ms, 15_000)).collect();
    let pending = shmkit::pool::as_completed(handles);
    drop(pending); // its handles, never waited on, go with it
    let start = Instant::now();
    assert_eq!(pool.submit(square, 5).wait(), Ok(25));
    assert!(start.elapsed() < Duration::from_secs(1), "after as_completed: {:?}", start.elapsed());
}

#[test]
fn duration_max_timeouts_mean_no_timeout() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("duration_max_timeouts_mean_no_timeout", 1)
        .timeout(Duration::MAX)
        .start_timeout(Duration::MAX)
        .build()
        .expect("build with Duration::MAX start timeout");
    assert_eq!(pool.submit(sleep_ms, 50).wait(), Ok(50));
    assert_eq!(pool.batch().timeout(Duration::MAX).map(square, 0..3), [Ok(0), Ok(1), Ok(4)]);
    assert_eq!(pool.submit(square, 6).wait(), Ok(36), "the driver survived");
}

#[test]
fn a_message_too_large_to_send_fails_its_task_with_advice_and_nothing_else() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(120));
    let test = "a_message_too_large_to_send_fails_its_task_with_advice_and_nothing_else";
    let pool = pool(test, 1).build().unwrap();
    let helper = pool.helper_pids();
    let huge = 300 << 20; // over the 256 MiB a message carries
    match pool.submit(str_len, "A".repeat(huge)).wait() {
        Err(TaskError::Codec(msg)) => {
            assert!(msg.contains("SharedArray"), "{msg}");
            println!("too-large argument: {msg}");
        }
        other => panic!("a 300 MiB argument: {other:?}"),
    }
    match pool.submit(big_result, huge).wait() {
        Err(TaskError::Codec(msg)) => {
            assert!(msg.contains("SharedArray"), "{msg}");
            println!("too-large result: {msg}");
        }
        other => panic!("a 300 MiB result: {:?}", other.map(|v| v.len())),
    }
    match pool.submit(big_error, huge).wait() {
        Err(TaskError::Codec(msg)) => assert!(msg.contains("the error takes"), "{msg}"),
        other => panic!("a 300 MiB error message: {:?}", other.map_err(|e| e.to_string().len())),
    }
    assert_eq!(pool.submit(big_result, 10).wait().unwrap(), "Z".repeat(10), "the helper goes on");
    assert_eq!(pool.helper_pids(), helper, "and is the same helper: nothing crashed");
}

#[test]
fn a_process_a_task_starts_runs_its_main_as_usual() {
    shmkit::init(register);
    let test = "a_process_a_task_starts_runs_its_main_as_usual";
    if std::env::var_os("SHMKIT_TEST_GRANDCHILD").is_some() {
        // A helper's child inherits its environment, which names a pool.
        println!("grandchild main ran; is_helper={}", shmkit::pool::is_helper());
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool(test, 1).build().unwrap();
    let out = pool.submit(run_self, test.to_owned()).wait().unwrap();
    assert!(out.contains("grandchild main ran; is_helper=false"), "{out}");
    assert!(out.contains("1 passed"), "{out}");
}

#[test]
fn a_helper_whose_pool_is_gone_exits_before_main_runs() {
    shmkit::init(register);
    let test = "a_helper_whose_pool_is_gone_exits_before_main_runs";
    if common::child_arg().is_some() {
        println!("main ran");
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    // Started as a pool's helper by a pool that is already gone (our end of
    // its socket is closed), as if the pool died during the start; and,
    // for contrast, with variables that name another process as the pool.
    let run = |pool_pid: u32| {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(ours);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&theirs);
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]).env("SHMKIT_TEST_CHILD", "orphan");
        cmd.env("SHMKIT_HELPER_FD", fd.to_string()).env("SHMKIT_HELPER_PARENT", pool_pid.to_string());
        // SAFETY: one fcntl(2) call, async-signal-safe, on a descriptor the
        // child inherited open (`theirs` lives until `output` returns).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                rustix::io::fcntl_setfd(rustix::fd::BorrowedFd::borrow_raw(fd), rustix::io::FdFlags::empty())?;
                Ok(())
            });
        }
        let out = common::dies_with_parent(&mut cmd).output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (status, stdout) = run(std::process::id());
    assert!(!status.success(), "{status}: {stdout}");
    assert!(!stdout.contains("main ran"), "{stdout}");
    let (status, stdout) = run(1);
    assert!(status.success() && stdout.contains("main ran"), "not our socket: an ordinary process\n{stdout}");
}

#[test]
fn a_cancelled_tasks_wait_returns_at_once_even_when_every_helper_is_busy() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_cancelled_tasks_wait_returns_at_once_even_when_every_helper_is_busy", 1).build().unwrap();
    let busy = pool.submit(sleep_ms, 20_000);
    let queued = pool.submit(square, 5);
    assert!(queued.cancel());
    let start = Instant::now();
    assert_eq!(queued.wait(), Err(TaskError::Cancelled));
    assert!(start.elapsed() < Duration::from_secs(1), "waited {:?} for a cancelled task", start.elapsed());
    drop(busy);
}

#[test]
fn a_helper_that_dies_while_a_process_it_forked_holds_its_socket_is_still_seen() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_helper_that_dies_while_a_process_it_forked_holds_its_socket_is_still_seen", 1).build().unwrap();
    let path = std::env::temp_dir().join(common::unique("forked-pid"));
    let start = Instant::now();
    let got = pool.submit(fork_and_die, path.display().to_string()).wait();
    let took = start.elapsed();
    let stray: i32 = std::fs::read_to_string(&path).unwrap().trim().parse().unwrap();
    let _ = std::fs::remove_file(&path);
    rustix::process::kill_process(rustix::process::Pid::from_raw(stray).unwrap(), rustix::process::Signal::KILL).ok();
    assert_eq!(got, Err(TaskError::WorkerDied { signal: Some(6), code: None }));
    assert!(took < Duration::from_secs(10), "the death was seen only when the forked child let go, after {took:?}");
    assert_eq!(pool.submit(square, 5).wait(), Ok(25), "and a replacement serves");
    println!("a helper died while its forked child held its socket: seen after {took:?}");
}

#[test]
fn a_helper_that_dies_in_its_initializer_is_reported_as_exited_not_timed_out() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let test = "a_helper_that_dies_in_its_initializer_is_reported_as_exited_not_timed_out";
    let built = pool(test, 1).initializer(abort, ()).start_timeout(Duration::from_secs(45)).build();
    assert!(matches!(built, Err(PoolError::HelperExited(_))), "{:?}", built.err());
}

#[test]
fn an_initializer_with_a_result_larger_than_a_ring_does_not_stall_the_start() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let test = "an_initializer_with_a_result_larger_than_a_ring_does_not_stall_the_start";
    let built = pool(test, 2).initializer(big_result, 3_000_000).start_timeout(Duration::from_secs(20)).build();
    let pool = built.expect("a 3 MB initializer result goes through the 128 KiB ring in pieces");
    assert_eq!(pool.submit(square, 3).wait(), Ok(9));
}

#[test]
fn a_coordinator_with_standard_input_and_output_closed_still_gets_helpers() {
    let test = "a_coordinator_with_standard_input_and_output_closed_still_gets_helpers";
    if common::child_arg().is_some() {
        shmkit::init(register);
        let pool = pool(test, 1).start_timeout(Duration::from_secs(20)).build().unwrap();
        assert_eq!(pool.submit(square, 7).wait(), Ok(49));
        drop(pool); // `exit` runs no destructor: the pool's segment would stay behind
        std::process::exit(0);
    }
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--test-threads=1"]).env("SHMKIT_TEST_CHILD", "closed");
    // SAFETY: two close(2) calls, async-signal-safe, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::close(0);
            libc::close(1);
            Ok(())
        });
    }
    let status =
        common::wait_with_watchdog(common::dies_with_parent(&mut cmd).spawn().unwrap(), Duration::from_secs(40));
    assert!(status.success(), "{status}");
}

/// A helper SIGKILLed at random moments while an argument and a result
/// of 4 MiB (32 times its 128 KiB rings) pass through: each task ends whole
/// or as `WorkerDied`, never with torn data, and the replacement helper,
/// on the same rings, serves correctly.
#[test]
fn a_helper_killed_while_messages_larger_than_its_rings_pass_fails_only_those_tasks() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(180));
    let test = "a_helper_killed_while_messages_larger_than_its_rings_pass_fails_only_those_tasks";
    let pool = pool(test, 1).build().unwrap();
    let mut rng = common::seeded_rng("large message kills");
    let big = "x".repeat(4 << 20);
    let (mut whole, mut died) = (0, 0);
    for round in 0..30u64 {
        let (arg, result) = (pool.submit(str_len, big.clone()), pool.submit(big_result, 4 << 20));
        let pid = pool.helper_pids()[0];
        // From before the argument reaches the helper to after the result
        // left it (about 100 ms in a debug build).
        std::thread::sleep(Duration::from_micros(rng.below(150_000)));
        let _ = common::signal(pid, rustix::process::Signal::KILL);
        let intact = |s: String| s.len() == 4 << 20 && s.bytes().all(|b| b == b'Z');
        for (what, outcome) in [("argument", arg.wait().map(|n| n == big.len())), ("result", result.wait().map(intact))]
        {
            match outcome {
                Ok(true) => whole += 1,
                Err(TaskError::WorkerDied { .. }) => died += 1,
                other => panic!("round {round}: the large {what}'s task ended {other:?}"),
            }
        }
        assert_eq!(pool.submit(square, round).wait(), Ok(round * round), "round {round}: the replacement serves");
    }
    println!("large messages: {whole} tasks ended whole, {died} with their helper");
    assert!(died > 0, "no kill landed while a large message was in flight");
}

/// A task dropped while it waits in a helper's pipeline, behind a running
/// one, must never run: with the default depth and with a deep pipeline.
#[test]
fn a_task_dropped_while_pipelined_behind_a_running_one_never_runs() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    for depth in [2, 32] {
        // No .in_test: built on this test's thread, the pool finds it.
        let pool = Pool::builder().tasks(register).helpers(1).pipeline(depth).build().unwrap();
        let counter = shmkit::sync::ShmCounter::create_unique(0).unwrap();
        let helper = pool.helper_pids();
        let gate = pool.submit(sleep_ms, 100);
        let a = pool.submit(sleep_ms, 300);
        let b = pool.submit(bump, counter.name().to_owned());
        let c = pool.submit(square, 3);
        assert_eq!(gate.wait(), Ok(100));
        std::thread::sleep(Duration::from_millis(50)); // `a` runs; `b` waits in the helper's pipeline
        drop(b);
        assert_eq!(a.wait(), Ok(300));
        assert_eq!(c.wait(), Ok(9));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(counter.get(), 0, "pipeline {depth}: the dropped task ran");
        assert_eq!(pool.helper_pids(), helper, "pipeline {depth}: it was skipped, not killed");
    }
}

/// A pool built in a test without `.in_test`: helpers re-run this test on
/// exactly this test, every time (it was flaky, passing when another
/// test's `init` happened to serve).
#[test]
fn a_pool_built_in_a_test_without_in_test_finds_its_test_every_time() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(120));
    for round in 0..10 {
        let pool = Pool::builder().tasks(register).helpers(2).build().unwrap();
        let squares: Vec<u64> = pool.map(square, 0..20u64).into_iter().map(Result::unwrap).collect();
        assert_eq!(squares, (0..20u64).map(|x| x * x).collect::<Vec<_>>(), "round {round}");
    }
}

/// A helper whose `main` forgot `init` must stop at its first use of
/// shmkit, before it takes work off a shared queue (each of them took a
/// record and lost it, before the safety net fired at `Pool::build`).
#[test]
fn forgetting_init_stops_a_helper_before_it_takes_work_off_a_queue() {
    // No shmkit::init, on purpose: the coordinator runs as a child, and its
    // helpers re-run the same test.
    let test = "forgetting_init_stops_a_helper_before_it_takes_work_off_a_queue";
    if let Some(name) = common::child_arg() {
        let rx = shmkit::sync::ShmQueue::<u64>::open(&name).unwrap().receiver().unwrap(); // helpers stop here
        let mine = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let built = Pool::builder().tasks(register).helpers(2).build();
        assert!(matches!(built, Err(PoolError::NotInitialized { .. })), "{:?}", built.err());
        println!("took record {mine}");
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let q = shmkit::sync::ShmQueue::<u64>::create_unique(8).unwrap();
    let tx = q.sender().unwrap();
    (0..4).for_each(|i| tx.send(i).unwrap());
    assert!(run_child(test, q.name()).success());
    assert_eq!(q.len(), 3, "the coordinator took one record; its helpers none");
}

/// A waker (an async runtime's code) that panics when its task completes
/// must not take the pool's driver thread, and the queued jobs, with it.
#[test]
fn a_panicking_waker_does_not_stop_the_pool() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    struct Boom;
    impl std::task::Wake for Boom {
        fn wake(self: std::sync::Arc<Self>) {
            panic!("a waker that panics");
        }
    }
    let pool = Pool::builder().tasks(register).helpers(1).build().unwrap();
    let mut handle = pool.submit(sleep_ms, 50);
    let waker = std::task::Waker::from(std::sync::Arc::new(Boom));
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(std::future::Future::poll(std::pin::Pin::new(&mut handle), &mut cx).is_pending());
    std::thread::sleep(Duration::from_millis(200)); // it completes; the waker panics on the driver thread
    let squares: Vec<u64> = pool.map(square, 0..8u64).into_iter().map(Result::unwrap).collect();
    assert_eq!(squares[7], 49, "the driver lives on");
    assert_eq!(handle.wait(), Ok(50));
}

/// Tasks sent straight to an idle helper (the waiting caller reads the
/// answer itself, no driver in between), their helper killed or stopped
/// at a random moment, or the task waited after a pause (its driver took
/// it over), cancelled, or dropped: each has one outcome, and `Ok` means
/// it ran exactly once. The helper is hit while it reads the job, runs
/// it, or writes its answer, whichever the random moment meets.
#[test]
fn a_task_sent_straight_to_an_idle_helper_has_one_outcome_whatever_hits_it() {
    shmkit::init(register);
    let rounds = common::tier(60, 400);
    let _w = Watchdog::new(Duration::from_secs(60 + rounds / 2));
    let mut rng = common::seeded_rng("tasks sent straight to a helper");
    let test = "a_task_sent_straight_to_an_idle_helper_has_one_outcome_whatever_hits_it";
    let pool = pool(test, 1).build().unwrap();
    let runs = shmkit::sync::ShmCounter::create_unique(0).unwrap();
    let (mut seen, mut died, mut cancelled) = ([0usize; 5], 0, 0);
    for round in 0..rounds {
        // Idle again: a replacement is ready, and its driver lends it.
        assert_eq!(pool.submit(square, round).wait(), Ok(round * round));
        std::thread::sleep(Duration::from_micros(rng.below(200)));
        let before = runs.get();
        let helper = pool.helper_pids()[0];
        let (what, after) = (rng.below(5), Duration::from_micros(rng.below(300)));
        let handle = pool.submit(bump_after, (runs.name().to_owned(), rng.below(300)));
        let hit = |signal| {
            std::thread::spawn(move || {
                std::thread::sleep(after);
                let _ = common::signal(helper, signal);
                if signal == rustix::process::Signal::STOP {
                    std::thread::sleep(Duration::from_millis(20));
                    let _ = common::signal(helper, rustix::process::Signal::CONT);
                }
            })
        };
        let (result, hitter) = match what {
            0 | 1 => {
                let signal = [rustix::process::Signal::KILL, rustix::process::Signal::STOP][what as usize];
                let hitter = hit(signal); // started before the wait begins
                (Some(handle.wait()), Some(hitter))
            }
            2 => {
                std::thread::sleep(after * 10); // past its lease: the driver serves it
                (Some(handle.wait()), None)
            }
            3 => {
                std::thread::sleep(after / 10);
                handle.cancel();
                (Some(handle.wait()), None)
            }
            _ => {
                std::thread::sleep(after / 10);
                drop(handle);
                (None, None)
            }
        };
        if let Some(h) = hitter {
            h.join().unwrap();
        }
        seen[what as usize] += 1;
        std::thread::sleep(Duration::from_millis(2)); // a task killed mid-run is gone by now
        let ran = runs.get() - before;
        let why = format!("round {round}, case {what}, hit after {after:?}: {result:?}, ran {ran} times");
        assert!(ran <= 1, "{why}");
        match result {
            Some(Ok(())) => assert_eq!(ran, 1, "{why}"),
            Some(Err(TaskError::WorkerDied { .. })) => {
                assert_eq!(what, 0, "{why}");
                died += 1;
            }
            Some(Err(TaskError::Cancelled)) => {
                assert_eq!(what, 3, "{why}");
                cancelled += 1;
            }
            Some(Err(_)) => panic!("{why}"),
            None => {}
        }
    }
    assert_eq!(pool.submit(square, 7).wait(), Ok(49), "the pool serves on");
    println!("{rounds} rounds (kill, stop, late wait, cancel, drop): {seen:?}; {died} died, {cancelled} cancelled");
}

/// A job queued (a timeout under 50 ms is never lent) while one helper
/// runs a long lent task goes to the other helper at once: it never waits
/// behind the lent task while a helper idles.
#[test]
fn a_queued_task_never_waits_behind_a_lent_one_while_a_helper_idles() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_queued_task_never_waits_behind_a_lent_one_while_a_helper_idles", 2).build().unwrap();
    for round in 0..20 {
        // One helper kept busy with round trips for 40 ms: the other's
        // driver sleeps without a timeout.
        let until = Instant::now() + Duration::from_millis(40);
        while Instant::now() < until {
            assert_eq!(pool.submit(square, 3).wait(), Ok(9));
        }
        let long = pool.submit(sleep_ms, 3000);
        let start = Instant::now();
        let queued = pool.batch().timeout(Duration::from_millis(49)).submit(square, 4);
        assert_eq!(queued.wait(), Ok(16), "round {round}");
        let took = start.elapsed();
        assert!(took < Duration::from_millis(1000), "round {round}: the second task waited {took:?}");
        drop(long);
    }
}

/// A task lent to a helper whose driver slept without a timeout (the pool
/// idle for long), never waited on: its driver still takes it over when
/// the lease runs out, and enforces its timeout.
#[test]
fn a_lent_task_nobody_waits_for_is_still_timed_out() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_lent_task_nobody_waits_for_is_still_timed_out", 1).build().unwrap();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(60)); // idle: the driver sleeps untimed
        let helper = pool.helper_pids();
        let limit = Duration::from_millis(100);
        let start = Instant::now();
        let handle = pool.batch().timeout(limit).submit(sleep_ms, 5000);
        std::thread::sleep(Duration::from_millis(400)); // not waiting: the lease runs out
        assert_ne!(pool.helper_pids(), helper, "round {round}: the helper past its timeout still runs");
        assert_eq!(handle.wait(), Err(TaskError::TimedOut(limit)), "round {round}");
        assert!(start.elapsed() < Duration::from_secs(2), "round {round}: {:?}", start.elapsed());
    }
}

/// A helper whose last task (of `max_tasks_per_helper`) was lent and
/// answered straight to its caller is still replaced at once, not when
/// the next task comes.
#[test]
fn a_helper_whose_last_task_was_lent_is_replaced_at_once() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let test = "a_helper_whose_last_task_was_lent_is_replaced_at_once";
    let pool = pool(test, 1).max_tasks_per_helper(3).build().unwrap();
    let first = pool.helper_pids();
    for x in 0..3 {
        assert_eq!(pool.submit(square, x).wait(), Ok(x * x));
    }
    let start = Instant::now();
    while pool.helper_pids() == first || pool.helper_pids().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "the helper that ran its 3 tasks is still {first:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(pool.submit(square, 9).wait(), Ok(81));
}

/// A task sent straight to a sleeping helper with arguments larger than
/// its job ring (the rest goes through the driver) wakes the helper at
/// once: it never waits for the helper's next look.
#[test]
fn a_lent_task_larger_than_the_ring_wakes_its_sleeping_helper() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_lent_task_larger_than_the_ring_wakes_its_sleeping_helper", 1).build().unwrap();
    let big = "A".repeat(300_000); // more than the 128 KiB ring
    for round in 0..10 {
        assert_eq!(pool.submit(square, 2).wait(), Ok(4)); // lent lately: lends again
        std::thread::sleep(Duration::from_millis(2)); // the helper sleeps now
        let start = Instant::now();
        assert_eq!(pool.submit(str_len, big.clone()).wait(), Ok(big.len()));
        let took = start.elapsed();
        assert!(took < Duration::from_millis(500), "round {round}: {took:?}");
    }
}
