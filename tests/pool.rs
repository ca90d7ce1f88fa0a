//! The pool in real processes: every operation, and every fault.

mod common;
#[path = "common/tasks.rs"]
mod tasks;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{alive, child_arg, spawn_child, Watchdog};
use shmkit::pool::{PoolBuilder, TaskError};
use shmkit::Pool;
use tasks::*;

/// A pool whose helpers re-run this test binary on exactly `test`.
fn pool(test: &str, helpers: usize) -> PoolBuilder {
    Pool::builder().tasks(register).helpers(helpers).in_test(test)
}

fn ok<T>(results: Vec<Result<T, TaskError>>) -> Vec<T> {
    results.into_iter().collect::<Result<_, _>>().expect("every task succeeds")
}

#[test]
fn map_and_chunked_map_keep_argument_order() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("map_and_chunked_map_keep_argument_order", 2).build().unwrap();
    let expect: Vec<u64> = (0..500).map(|x| x * x).collect();
    assert_eq!(ok(pool.map(square, 0..500)), expect);
    assert_eq!(ok(pool.map_chunked(square, 0..500, 7)), expect);
    assert_eq!(ok(pool.batch().auto_chunksize().map(square, 0..500)), expect);
    assert_eq!(ok(pool.map(add, [(1, 2), (3, 4), (-5, 5)])), [3, 7, 0]);
    assert!(pool.map(square, std::iter::empty()).is_empty());
}

#[test]
fn map_unordered_yields_every_result_once() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("map_unordered_yields_every_result_once", 2).build().unwrap();
    let mut seen: Vec<(usize, u64)> =
        pool.map_unordered(sleep_ms, [30, 1, 20, 1, 10, 1]).map(|(i, r)| (i, r.unwrap())).collect();
    assert_eq!(seen.len(), 6);
    seen.sort();
    assert_eq!(seen, [(0, 30), (1, 1), (2, 20), (3, 1), (4, 10), (5, 1)]);
}

#[test]
fn progress_is_reported_for_every_result() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("progress_is_reported_for_every_result", 2).build().unwrap();
    let mut calls = Vec::new();
    let results = pool.batch().chunksize(10).progress(|done, total| calls.push((done, total))).map(square, 0..35);
    assert_eq!(results.len(), 35);
    assert_eq!(calls.len(), 35);
    assert_eq!(calls.last(), Some(&(35, 35)));
}

#[test]
fn submit_handles_wait_poll_and_complete_in_any_order() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("submit_handles_wait_poll_and_complete_in_any_order", 2).build().unwrap();
    assert_eq!(pool.submit(square, 12).wait(), Ok(144));
    let slow = pool.submit(sleep_ms, 300);
    let slow = slow.try_wait().expect_err("not done yet");
    let slow = slow.wait_timeout(Duration::from_millis(10)).expect_err("still not done");
    assert_eq!(slow.wait_timeout(Duration::from_secs(10)).ok(), Some(Ok(300)));
    let handles: Vec<_> = [200, 1, 100].into_iter().map(|ms| pool.submit(sleep_ms, ms)).collect();
    let order: Vec<usize> = shmkit::pool::as_completed(handles).map(|(i, r)| (r.unwrap(), i).1).collect();
    assert_eq!(order[0], 1, "the 1 ms task finishes first");
    assert_eq!(order.len(), 3);
}

/// `Completions`: handles added while another thread waits; results in
/// the order tasks finish; a cancelled task's result comes out too.
#[test]
fn completions_take_handles_at_any_time_and_yield_them_as_they_finish() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("completions_take_handles_at_any_time_and_yield_them_as_they_finish", 2).build().unwrap();
    let done = std::sync::Arc::new(shmkit::pool::Completions::new());
    let slow = done.add(pool.submit(sleep_ms, 300));
    let waiter = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < 3 {
                if let Some(item) = done.next_timeout(Duration::from_secs(20)) {
                    seen.push(item);
                }
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let quick = done.add(pool.submit(sleep_ms, 1));
    let cancelled = done.add(pool.submit(sleep_ms, 10_000));
    assert!(done.cancel(cancelled), "running or queued: cancelled");
    assert!(!done.cancel(99), "no such key");
    let seen = waiter.join().unwrap();
    let keys: Vec<u64> = seen.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().position(|k| *k == quick) < keys.iter().position(|k| *k == slow), "{keys:?}");
    for (key, result) in seen {
        match key {
            k if k == cancelled => assert_eq!(result, Err(TaskError::Cancelled)),
            k if k == quick => assert_eq!(result, Ok(1)),
            _ => assert_eq!(result, Ok(300)),
        }
    }
    assert!(done.is_empty() && done.next_timeout(Duration::from_millis(10)).is_none());
}

#[test]
fn a_handle_is_a_future() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_handle_is_a_future", 1).build().unwrap();
    let (a, b) = (pool.submit(square, 3), pool.submit(sleep_ms, 50));
    assert_eq!(block_on(async { (a.await, b.await) }), (Ok(9), Ok(50)));
}

/// Runs a future to completion on this thread (no runtime needed).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn panics_and_error_chains_come_back_as_errors_and_the_helper_lives_on() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("panics_and_error_chains_come_back_as_errors_and_the_helper_lives_on", 1).build().unwrap();
    let pids = pool.helper_pids();
    let results = pool.map(panics, 0..6);
    let TaskError::Panicked(msg) = results[3].clone().unwrap_err() else { panic!("{:?}", results[3]) };
    assert!(msg.contains("boom on 3") && msg.contains("tasks.rs"), "{msg}");
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    let err = pool.submit(fails, 9).wait().unwrap_err();
    assert_eq!(err, TaskError::Failed(vec!["could not process item 9".into(), "disk on fire".into()]));
    assert_eq!(err.to_string(), "task failed: could not process item 9: disk on fire");
    assert_eq!(pool.helper_pids(), pids, "a panic does not cost a helper");
}

#[test]
fn kill_9_during_a_map_fails_only_that_task_20_of_20() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(120));
    let pool = pool("kill_9_during_a_map_fails_only_that_task_20_of_20", 2).build().unwrap();
    let mut mid_task = 0;
    for trial in 0..20u64 {
        let victim = pool.helper_pids()[trial as usize % 2];
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30 + trial * 7 % 80));
            kill9(victim);
            Instant::now()
        });
        let results = pool.map(slow_square, 0..64);
        let killed_at = killer.join().unwrap();
        assert!(
            killed_at.elapsed() < Duration::from_secs(1),
            "trial {trial}: map returned {:?} after the kill",
            killed_at.elapsed()
        );
        // The one task that was running fails; none does if the kill landed
        // while the helper waited between tasks (its next had not started).
        let died: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
        assert!(died.len() <= 1, "trial {trial}: {died:?}");
        assert!(died.iter().all(|r| **r == Err(TaskError::WorkerDied { signal: Some(9), code: None })), "{died:?}");
        mid_task += died.len();
        for (x, r) in results.iter().enumerate().filter(|(_, r)| r.is_ok()) {
            assert_eq!(r, &Ok(x as u64 * x as u64));
        }
        assert!(!pool.helper_pids().contains(&victim) || !alive(victim));
    }
    assert_eq!(ok(pool.map(square, 0..10)).len(), 10, "the pool keeps working");
    assert!(mid_task >= 10, "only {mid_task} of 20 kills landed in a task: the test proved little");
}

#[test]
fn with_retries_a_killed_helpers_task_is_rerun() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("with_retries_a_killed_helpers_task_is_rerun", 2).retries(1).build().unwrap();
    let victim = pool.helper_pids()[0];
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(60));
        kill9(victim);
    });
    let results = pool.map(slow_square, 0..64);
    killer.join().unwrap();
    assert_eq!(ok(results), (0..64).map(|x| x * x).collect::<Vec<u64>>());
}

#[test]
fn a_crashing_task_reports_its_signal() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_crashing_task_reports_its_signal", 1).build().unwrap();
    assert_eq!(pool.submit(abort, ()).wait(), Err(TaskError::WorkerDied { signal: Some(6), code: None }));
    assert_eq!(pool.submit(square, 5).wait(), Ok(25));
}

#[test]
fn a_task_past_its_timeout_is_killed_and_the_next_succeeds() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("a_task_past_its_timeout_is_killed_and_the_next_succeeds", 2).build().unwrap();
    let before = pool.helper_pids();
    let start = Instant::now();
    let result = pool.batch().timeout(Duration::from_millis(200)).submit(sleep_ms, 5_000).wait();
    let took = start.elapsed();
    assert_eq!(result, Err(TaskError::TimedOut(Duration::from_millis(200))));
    assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(300), "took {took:?}");
    assert_eq!(pool.submit(square, 9).wait(), Ok(81));
    assert_ne!(pool.helper_pids(), before, "the stuck helper was replaced");
    let mixed = pool.batch().timeout(Duration::from_millis(300)).map(sleep_ms, [5, 10_000, 5, 5]);
    assert_eq!(mixed, [Ok(5), Err(TaskError::TimedOut(Duration::from_millis(300))), Ok(5), Ok(5)]);
}

#[test]
fn cancel_kills_a_running_task_and_skips_a_queued_one() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("cancel_kills_a_running_task_and_skips_a_queued_one", 1).pipeline(1).build().unwrap();
    let running = pool.submit(sleep_ms, 10_000);
    let queued = pool.submit(sleep_ms, 10_000);
    std::thread::sleep(Duration::from_millis(100));
    assert!(queued.cancel());
    let start = Instant::now();
    assert!(running.cancel());
    assert_eq!(running.wait(), Err(TaskError::Cancelled));
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(queued.wait(), Err(TaskError::Cancelled));
    let done = pool.submit(square, 4);
    assert_eq!(done.wait(), Ok(16));
    let finished = pool.submit(square, 2);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!finished.cancel(), "too late to cancel a finished task");
    assert_eq!(finished.wait(), Ok(4));
}

#[test]
fn helpers_are_recycled_after_max_tasks() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = pool("helpers_are_recycled_after_max_tasks", 1).max_tasks_per_helper(3).build().unwrap();
    let pids: Vec<u32> = ok(pool.map(pid, vec![(); 9]));
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
    assert!(pids.chunks(3).all(|c| c.iter().all(|&p| p == c[0])));
}

#[test]
fn the_initializer_runs_in_every_helper_and_its_failure_fails_build() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let test = "the_initializer_runs_in_every_helper_and_its_failure_fails_build";
    let pool = pool(test, 2).initializer(set_marker, "ready".to_string()).max_tasks_per_helper(2).build().unwrap();
    let markers = ok(pool.map(marker, vec![(); 8]));
    assert!(markers.iter().all(|m| m.as_deref() == Some("ready")), "{markers:?}");
    drop(pool);
    let Err(err) = self::pool(test, 1).initializer(set_marker, "bad".to_string()).build() else { panic!("built") };
    assert!(err.to_string().contains("initializer refused"), "{err}");
}

#[test]
fn unregistered_task_is_a_clear_error() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    fn not_registered(x: u8) -> u8 {
        x
    }
    let pool = pool("unregistered_task_is_a_clear_error", 1).build().unwrap();
    let err = pool.submit(not_registered, 1).wait().unwrap_err();
    assert!(matches!(err, TaskError::NotRegistered(name) if name.ends_with("not_registered")));
}

#[test]
fn a_separate_helper_binary_serves_the_same_tasks() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let exe = common::example("pool_helper");
    let pool = Pool::builder().tasks(register).helpers(2).program(&exe).build().unwrap();
    assert_eq!(ok(pool.map(square, 0..5)), [0, 1, 4, 9, 16]);
    fn other(r: &mut shmkit::Registry) {
        r.add(add);
    }
    let mismatch = Pool::builder().tasks(other).helpers(1).program(&exe).build();
    assert!(matches!(mismatch, Err(shmkit::pool::PoolError::TaskMismatch { .. })), "{:?}", mismatch.err());
}

#[test]
fn helpers_output_arrives_in_whole_lines_even_from_one_that_crashed() {
    let test = "helpers_output_arrives_in_whole_lines_even_from_one_that_crashed";
    shmkit::init(register);
    if child_arg().is_some() {
        let pool = pool(test, 4).build().unwrap();
        {
            // Holding std's stderr lock while helpers print must not stall
            // them: the relays write to the descriptor, not through it.
            let _held = std::io::stderr().lock();
            assert_eq!(ok(pool.map(chatter, 1..=8)).len(), 8);
        }
        assert!(matches!(pool.submit(last_words, 9).wait(), Err(TaskError::WorkerDied { .. })));
        // A process a helper started keeps its output pipes open after the
        // pool is gone: the relays end anyway, soon after.
        let sleeper = pool.submit(spawn_sleeper, 30).wait().unwrap();
        drop(pool);
        std::thread::sleep(Duration::from_millis(1500));
        let relays = std::fs::read_dir("/proc/self/task").unwrap().flatten();
        let relays =
            relays.filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "shmkit-relay"));
        let left = relays.count();
        let _ = common::signal(sleeper, rustix::process::Signal::KILL);
        assert_eq!(left, 0, "relay threads outlived their helpers");
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let out = common::child_command(test, "1", None).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let chatter: Vec<&str> = stderr.lines().filter(|l| l.contains("chatter")).collect();
    let whole = |l: &&str| {
        let id = l.strip_prefix("chatter ").and_then(|r| r.split(' ').next()).unwrap_or("?");
        let body = format!(" {id}{id}{id}").repeat(20);
        l.starts_with(&format!("chatter {id} line ")) && l.ends_with(&format!(":{body} end {id}"))
    };
    let torn: Vec<&&str> = chatter.iter().filter(|l| !whole(l)).collect();
    assert!(torn.is_empty(), "{} torn lines, the first: {:?}", torn.len(), torn.first());
    assert_eq!(chatter.len(), 8 * 200);
    assert!(stderr.contains("last words of 9\n"), "{stderr}");
    assert!(stderr.contains("cut short 9"), "the partial last line of a crashed helper is kept");
}

#[test]
fn dropping_or_terminating_the_pool_leaves_no_helper() {
    shmkit::init(register);
    let _w = Watchdog::new(Duration::from_secs(60));
    let test = "dropping_or_terminating_the_pool_leaves_no_helper";
    let pool = pool(test, 2).build().unwrap();
    let pids = pool.helper_pids();
    assert_eq!(pool.map(square, 0..4).len(), 4);
    drop(pool);
    assert!(pids.iter().all(|&p| !alive(p)), "helpers outlived the pool");
    let pool = self::pool(test, 2).build().unwrap();
    let pids = pool.helper_pids();
    let stuck: Vec<_> = (0..4).map(|_| pool.submit(sleep_ms, 60_000)).collect();
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    pool.terminate();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(stuck.into_iter().all(|h| h.wait() == Err(TaskError::Terminated)));
    assert!(pids.iter().all(|&p| !alive(p)));
}

#[test]
fn helpers_exit_within_a_second_when_the_coordinator_is_killed() {
    shmkit::init(register);
    let test = "helpers_exit_within_a_second_when_the_coordinator_is_killed";
    if let Some(path) = child_arg() {
        let pool = pool(test, 2).build().unwrap();
        let _busy: Vec<_> = (0..3).map(|_| pool.submit(sleep_ms, 60_000)).collect();
        let pids: Vec<String> = pool.helper_pids().iter().map(u32::to_string).collect();
        std::fs::write(&path, pids.join(" ")).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("coordinator-pids"));
    let mut coordinator = spawn_child(test, path.to_str().unwrap(), std::process::Stdio::null());
    let start = Instant::now();
    while !path.exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(20)); // let the write finish
    let pids: Vec<u32> = std::fs::read_to_string(&path).unwrap().split(' ').map(|p| p.parse().unwrap()).collect();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(pids.len(), 2);
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    let killed = Instant::now();
    while pids.iter().any(|&p| alive(p)) && killed.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(pids.iter().all(|&p| !alive(p)), "helpers {pids:?} outlived their coordinator by 1 s");
    // The killed coordinator's pool status segment is garbage now.
    let removed = shmkit::admin::Gc::new().creator(coordinator.id()).run().unwrap();
    assert!(removed.iter().any(|n| n.starts_with(&format!("shmkit-{}-", coordinator.id()))), "{removed:?}");
}

fn kill9(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
}
