//! Fault injection: each round runs one workload (pool maps, plain and in
//! place; queue traffic between processes; a mutex, a reader-writer lock
//! or a barrier shared with processes) and SIGKILLs, or SIGSTOPs and later
//! SIGCONTs, a random process of it (a helper, a producer, a consumer, a
//! lock holder) at a random moment. Then it checks the invariants:
//!
//! - every pool task has exactly one outcome, and a correct one if `Ok`;
//! - no in-place chunk is ever applied twice;
//! - queue records arrive at most once, and exactly once except the one a
//!   killed consumer may lose (and the one a killed producer may have
//!   pushed without recording it);
//! - no call blocks past its timeout + 100 ms;
//! - an in-place pass that fails reports its rows exactly: applied rows
//!   changed once, not-applied rows untouched, whether its chunks went
//!   one per message or were claimed from a claim table;
//! - a claimed sum is exact when `Ok`, even when a helper died after
//!   finishing chunks whose results it never sent;
//! - tasks cancelled (or dropped) while queued or pipelined, helpers
//!   killed meanwhile: no task runs twice, every `Ok` ran once;
//! - tasks sent straight to an idle helper, their answers read by the
//!   waiting caller: the same;
//! - creators and a collector (`gc`) killed or stopped mid-work: one gc
//!   afterwards leaves nothing of theirs, and never removes a live segment;
//! - a list's pusher stopped or killed mid-push: a slot reads pending only
//!   while its pusher lives, a hole only once it is dead, never torn;
//! - a pool whose helper dies or stops in its start handshake: `build`
//!   returns in time, with a working pool or an error;
//! - no process and no `/dev/shm` entry is left.
//!
//! `SHMKIT_FAULT_ROUNDS` sets the number of rounds (default 300, about a
//! minute); `SHMKIT_FAULT_SEED` the seed. It prints one line: rounds,
//! faults injected, violations.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{child_arg, spawn_child, unique, Rng, Watchdog};
use ndarray::{ArrayView1, ArrayViewMut1, Ix1};
use rustix::process::Signal;
use shmkit::pool::TaskError;
use shmkit::sync::{
    EventMode, LockError, LockTimeoutError, RecvTimeoutError, ShmBarrier, ShmCounter, ShmEvent, ShmMutex, ShmQueue,
    ShmRwLock,
};
use shmkit::{Pool, SharedArray};

const TEST: &str = "fault_injection_harness";
/// The slack every timed call gets: "no call blocks past its timeout + 100 ms".
const SLACK: Duration = Duration::from_millis(100);

fn sleepy_square(x: u64, us: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(us));
    x * x
}

/// Adds 1 to its rows in two halves with a pause between: a kill can land
/// mid-chunk, and a chunk run twice would show 2.
fn bump(start: usize, mut rows: ArrayViewMut1<u32>) {
    let half = rows.len() / 2;
    rows.iter_mut().take(half).for_each(|x| *x += 1);
    std::thread::sleep(Duration::from_micros(200 * (start as u64 % 7)));
    rows.iter_mut().skip(half).for_each(|x| *x += 1);
}

/// Appends `i` to list `name` after `us` microseconds: a task whose
/// running shows, once per run.
fn mark(name: String, i: u64, us: u64) {
    std::thread::sleep(Duration::from_micros(us));
    shmkit::collections::ShmVec::<u64>::open(&name).unwrap().push(i).unwrap();
}

/// Sums its rows (1 each, so a chunk's sum is its length) with a pause
/// first: a kill can land while helpers claim and read chunks.
fn slow_count(start: usize, rows: ArrayView1<u32>) -> u64 {
    std::thread::sleep(Duration::from_micros(150 * (start as u64 % 5)));
    rows.iter().map(|&x| u64::from(x)).sum()
}

fn tasks(r: &mut shmkit::Registry) {
    r.add(sleepy_square).add(bump).add(mark).add(slow_count);
}

/// A fault: which signal, how long a stop lasts.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Stop(Duration),
}

fn send(pid: u32, sig: Signal) {
    let _ = common::signal(pid, sig); // it may be gone already
}

/// Injects `fault` into a process `pick` chooses, `after` from now, on a
/// thread; returns whether it was injected (the target may be gone).
fn inject(
    after: Duration,
    fault: Fault,
    pick: impl FnOnce() -> Option<u32> + Send + 'static,
) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let Some(pid) = pick() else { return false };
        match fault {
            Fault::Kill => send(pid, Signal::KILL),
            Fault::Stop(d) => {
                send(pid, Signal::STOP);
                std::thread::sleep(d);
                send(pid, Signal::CONT);
            }
        }
        true
    })
}

/// What the rounds found.
#[derive(Default)]
struct Tally {
    rounds: usize,
    faults: usize,
    violations: Vec<String>,
}

impl Tally {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let v = what();
            eprintln!("VIOLATION: {v}");
            self.violations.push(v);
        }
    }

    /// A timed call must end by its timeout plus the slack.
    fn on_time(&mut self, took: Duration, limit: Duration, what: &str) {
        self.check(took <= limit + SLACK, || format!("{what} took {took:?} for a timeout of {limit:?}"));
    }
}

fn fault(rng: &mut Rng) -> Fault {
    match rng.chance(2) {
        true => Fault::Kill,
        false => Fault::Stop(Duration::from_millis(rng.below(60))),
    }
}

fn pick_helper(pool: &Pool, rng: &mut Rng) -> impl FnOnce() -> Option<u32> + Send + 'static {
    let pids = pool.helper_pids();
    let k = rng.below(pids.len() as u64) as usize;
    move || pids.get(k).copied()
}

/// A map of tiny-to-short tasks with a per-task timeout, a helper hit.
fn round_map(pool: &Pool, rng: &mut Rng, t: &mut Tally) {
    let n = 20 + rng.below(40);
    let limit = Duration::from_millis(40);
    let args: Vec<(u64, u64)> = (0..n).map(|x| (x, rng.below(3000))).collect();
    let injector = inject(Duration::from_micros(rng.below(40_000)), fault(rng), pick_helper(pool, rng));
    let results = pool.batch().timeout(limit).map(sleepy_square, args.clone());
    t.faults += usize::from(injector.join().unwrap());
    t.check(results.len() == n as usize, || format!("map of {n} gave {} results", results.len()));
    for (k, r) in results.iter().enumerate() {
        let allowed = matches!(r, Err(TaskError::WorkerDied { .. } | TaskError::TimedOut(_)));
        t.check(r == &Ok(args[k].0 * args[k].0) || allowed, || format!("map task {k}: {r:?}"));
    }
}

/// A submitted task with a timeout, its helper stopped or killed: its
/// outcome arrives by the timeout plus the slack.
fn round_submit(pool: &Pool, rng: &mut Rng, t: &mut Tally) {
    let limit = Duration::from_millis(30 + rng.below(50));
    let start = Instant::now();
    let h = pool.batch().timeout(limit).submit(sleepy_square, (7, rng.below(limit.as_micros() as u64 * 2)));
    let injector =
        inject(Duration::from_micros(rng.below(limit.as_micros() as u64)), fault(rng), pick_helper(pool, rng));
    let r = h.wait();
    t.on_time(start.elapsed(), limit, "a submitted task");
    t.faults += usize::from(injector.join().unwrap());
    let allowed = matches!(r, Ok(49) | Err(TaskError::WorkerDied { .. } | TaskError::TimedOut(_)));
    t.check(allowed, || format!("submitted task: {r:?}"));
}

/// Chunks applied in place while a helper is hit: with a timeout, some
/// past it (a message per chunk); without, claimed from a claim table.
fn round_in_place(pool: &Pool, rng: &mut Rng, t: &mut Tally, timed: bool) {
    let rows = 64 + rng.below(256) as usize;
    let mut a = SharedArray::<u32, Ix1>::create_unique(rows).unwrap();
    let per = 1 + rng.below(16) as usize;
    let limit = Duration::from_millis(1 + rng.below(3));
    let injector = inject(Duration::from_micros(rng.below(5000)), fault(rng), pick_helper(pool, rng));
    let batch = pool.batch().chunksize(per);
    let result = match timed {
        true => batch.timeout(limit).for_each_chunk_mut(&mut a, bump),
        false => batch.for_each_chunk_mut(&mut a, bump),
    };
    t.faults += usize::from(injector.join().unwrap());
    let values = a.as_slice().unwrap();
    let twice = values.iter().position(|&x| x > 1);
    t.check(twice.is_none(), || {
        format!("in place: row {twice:?} applied twice ({:?})", &values[..values.len().min(16)])
    });
    match result {
        Ok(()) => t.check(values.iter().all(|&x| x == 1), || "in place: Ok, yet some rows were not applied".into()),
        Err(shmkit::pool::InPlaceError::Incomplete(report)) => {
            let all = |ranges: &[std::ops::Range<usize>], want: u32| {
                ranges.iter().all(|r| values[r.clone()].iter().all(|&x| x == want))
            };
            t.check(all(&report.applied, 1), || format!("in place: rows reported applied are not: {report}"));
            t.check(all(&report.not_applied, 0), || format!("in place: rows reported not applied were: {report}"));
            let covered: usize = report
                .applied
                .iter()
                .chain(&report.not_applied)
                .chain(report.in_doubt.iter().map(|(r, _)| r))
                .map(|r| r.len())
                .sum();
            t.check(covered == rows, || format!("in place: the report covers {covered} of {rows} rows: {report}"));
        }
        Err(e) => t.check(false, || format!("in place: {e}")),
    }
}

/// A sum claimed chunk by chunk while a helper is hit, with or without a
/// retry: exact if `Ok` (a chunk whose result died with its helper is
/// counted once), else the helper's death.
fn round_sum(pool: &Pool, rng: &mut Rng, t: &mut Tally) {
    let rows = 64 + rng.below(2048) as usize;
    let mut a = SharedArray::<u32, Ix1>::create_unique(rows).unwrap();
    a.as_slice_mut().unwrap().fill(1);
    let per = 1 + rng.below(64) as usize;
    let retries = rng.below(2) as u32;
    let injector = inject(Duration::from_micros(rng.below(8000)), fault(rng), pick_helper(pool, rng));
    let sum = pool.batch().chunksize(per).retries(retries).reduce(&a, slow_count, |x, y| x + y);
    t.faults += usize::from(injector.join().unwrap());
    let allowed = match &sum {
        Ok(n) => *n == rows as u64,
        Err(shmkit::pool::ReduceError::Failed { error: TaskError::WorkerDied { .. }, .. }) => true,
        Err(_) => false,
    };
    t.check(allowed, || format!("claimed sum of {rows} ones in chunks of {per}, {retries} retries: {sum:?}"));
}

/// Tasks submitted behind one another, some cancelled or dropped at a
/// random moment (queued, pipelined or running), a helper hit meanwhile:
/// nothing runs twice, and every `Ok` ran once.
fn round_cancel(pool: &Pool, rng: &mut Rng, t: &mut Tally) {
    let n = 8 + rng.below(24);
    let list = shmkit::collections::ShmVec::<u64>::create_unique(4 * n as usize).unwrap();
    let handles: Vec<_> = (0..n).map(|i| pool.submit(mark, (list.name().to_owned(), i, rng.below(3000)))).collect();
    let injector = inject(Duration::from_micros(rng.below(20_000)), fault(rng), pick_helper(pool, rng));
    std::thread::sleep(Duration::from_micros(rng.below(10_000)));
    let mut kept = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match rng.below(3) {
            0 => drop(h), // cancels
            1 => {
                h.cancel();
                kept.push((i as u64, h));
            }
            _ => kept.push((i as u64, h)),
        }
    }
    let results: Vec<(u64, Result<(), TaskError>)> = kept.into_iter().map(|(i, h)| (i, h.wait())).collect();
    t.faults += usize::from(injector.join().unwrap());
    let allowed =
        |r: &Result<(), TaskError>| matches!(r, Ok(()) | Err(TaskError::Cancelled | TaskError::WorkerDied { .. }));
    check_marks(t, "cancel", &list, results, allowed);
}

/// The marks tasks left in `list`: none ran twice, every `Ok` ran, and
/// every outcome is `allowed`.
fn check_marks(
    t: &mut Tally,
    what: &str,
    list: &shmkit::collections::ShmVec<u64>,
    results: Vec<(u64, Result<(), TaskError>)>,
    allowed: impl Fn(&Result<(), TaskError>) -> bool,
) {
    std::thread::sleep(Duration::from_millis(5)); // a task killed mid-run is gone by now
    let mut marks = list.to_vec();
    marks.sort_unstable();
    let twice = marks.windows(2).find(|w| w[0] == w[1]);
    t.check(twice.is_none(), || format!("{what}: task {twice:?} ran twice"));
    for (i, r) in results {
        t.check(r.is_err() || marks.binary_search(&i).is_ok(), || format!("{what}: task {i} is Ok but never ran"));
        t.check(allowed(&r), || format!("{what}: task {i}: {r:?}"));
    }
}

/// Tasks submitted one at a time to an idle pool, each sent straight to
/// a helper and its answer read by the waiting caller (or, waited late,
/// by its driver), a helper hit meanwhile: every `Ok` ran once, none ran
/// twice.
fn round_lent(pool: &Pool, rng: &mut Rng, t: &mut Tally) {
    let n = 4 + rng.below(12);
    let list = shmkit::collections::ShmVec::<u64>::create_unique(4 * n as usize).unwrap();
    let injector = inject(Duration::from_micros(rng.below(3000)), fault(rng), pick_helper(pool, rng));
    let mut results = Vec::new();
    for i in 0..n {
        let h = pool.submit(mark, (list.name().to_owned(), i, rng.below(300)));
        if rng.chance(4) {
            std::thread::sleep(Duration::from_micros(rng.below(2000))); // past its lease
        }
        results.push((i, h.wait()));
    }
    t.faults += usize::from(injector.join().unwrap());
    check_marks(t, "lent", &list, results, |r| matches!(r, Ok(()) | Err(TaskError::WorkerDied { .. })));
}

/// Creators of segments and a collector hit while they work: afterwards
/// one gc (of this round's names) leaves nothing of theirs.
fn round_gc(rng: &mut Rng, t: &mut Tally) {
    let base = unique("fh-gc");
    let keep = SharedArray::<u8, Ix1>::create(&format!("{base}-live"), 4096).unwrap();
    let mut creator = spawn_child(TEST, &format!("creator:{base}"), Stdio::null());
    let f = fault(rng);
    let target = creator.id();
    let injector = inject(Duration::from_micros(rng.below(20_000)), f, move || Some(target));
    let _ = wait(&mut creator, t, "creator");
    t.faults += usize::from(injector.join().unwrap());
    let mut collector = spawn_child(TEST, &format!("collector:{base}"), Stdio::null());
    let target = collector.id();
    let injector = inject(Duration::from_micros(rng.below(5_000)), fault(rng), move || Some(target));
    let _ = wait(&mut collector, t, "collector");
    t.faults += usize::from(injector.join().unwrap());
    let _ = shmkit::admin::Gc::new().prefix(&base).run();
    let left: Vec<String> =
        common::dev_shm().into_iter().filter(|e| e.contains(&base) && !e.ends_with("-live")).collect();
    t.check(left.is_empty(), || format!("gc: left after one gc: {left:?}"));
    t.check(common::shm_exists(keep.name()), || "gc: removed a live creator's segment".into());
}

/// A pusher stopped or killed mid-push while the parent reads along.
fn round_list(rng: &mut Rng, t: &mut Tally) {
    let base = unique("fh-v");
    let list = shmkit::collections::ShmVec::<[u64; 4]>::create(&format!("{base}-v"), 1 << 16).unwrap();
    let mut pusher = spawn_child(TEST, &format!("pusher:{base}"), Stdio::null());
    let f = fault(rng);
    let target = pusher.id();
    let injector = inject(Duration::from_micros(1000 + rng.below(20_000)), f, move || Some(target));
    let mut next = 0;
    let until = Instant::now() + Duration::from_millis(40);
    while Instant::now() < until {
        match list.item(next) {
            shmkit::collections::Item::Ready(v) => {
                t.check(v.iter().all(|&x| x == v[0]), || format!("list: slot {next} torn: {v:?}"));
                next += 1;
            }
            shmkit::collections::Item::Hole => {
                // Its pusher must be dying: the kernel drops a process's
                // locks as it exits, a moment before it can be waited for.
                let dying = Instant::now();
                while pusher.try_wait().unwrap().is_none() && dying.elapsed() < Duration::from_millis(500) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let dead = pusher.try_wait().unwrap().is_some();
                t.check(dead, || format!("list: slot {next} reads as a hole while its pusher lives"));
                next += 1;
            }
            _ => std::thread::yield_now(),
        }
    }
    let _ = pusher.kill();
    let _ = pusher.wait();
    t.faults += usize::from(injector.join().unwrap());
    let holes = (0..list.len()).filter(|&i| list.item(i) == shmkit::collections::Item::Hole).count();
    t.check(holes <= 1, || format!("list: {holes} holes from one dead pusher"));
    let pending = (0..list.len()).any(|i| list.item(i) == shmkit::collections::Item::Pending);
    t.check(!pending, || "list: a slot of a dead pusher reads as pending".into());
}

/// A pool whose helpers die or stop inside their start handshake (a fault
/// point there) or at a random moment of it: `build` returns in time.
fn round_start(rng: &mut Rng, t: &mut Tally) {
    let point = ["helper-before-ready", "none"][rng.below(2) as usize];
    let start = Instant::now();
    let limit = Duration::from_secs(5);
    let builder = Pool::builder().tasks(tasks).helpers(2).in_test(TEST).start_timeout(limit);
    let built = builder.env("SHMKIT_FAULT_INJECT", point).env("SHMKIT_TEST_CHILD", "helper").build();
    t.on_time(start.elapsed(), limit, "a pool's start");
    match (built, point) {
        (Ok(pool), "none") => {
            let r = pool.map(sleepy_square, [(3, 0)]);
            t.check(r == [Ok(9)], || format!("start: a fresh pool answered {r:?}"));
        }
        (Err(shmkit::pool::PoolError::HelperExited(_)), "helper-before-ready") => t.faults += 1,
        (other, _) => t.check(false, || format!("start with a helper dying at {point}: {:?}", other.map(drop))),
    }
}

/// Records 0..n through a queue from a producer process to a consumer
/// process, one of them hit; the parent drains what is left.
fn round_queue(rng: &mut Rng, t: &mut Tally) {
    let base = unique("fh-q");
    let n = 2000 + rng.below(6000);
    let q = ShmQueue::<u64>::create(&format!("{base}-q"), 1 + rng.below(64)).unwrap();
    let rx = q.receiver().unwrap();
    let progress = ShmCounter::create(&format!("{base}-progress"), 0).unwrap();
    let seen = SharedArray::<u8, Ix1>::create(&format!("{base}-seen"), n as usize).unwrap();
    let mut producer = spawn_child(TEST, &format!("producer:{base}:{n}"), Stdio::null());
    let mut consumer = spawn_child(TEST, &format!("consumer:{base}"), Stdio::null());
    let (hit_producer, f) = (rng.chance(2), fault(rng));
    let target = if hit_producer { producer.id() } else { consumer.id() };
    let injector = inject(Duration::from_micros(rng.below(30_000)), f, move || Some(target));
    // The parent consumes too (a dead consumer must not stall the producer),
    // with timed pops that must stay on time whatever the others suffer.
    let mut mine = vec![0u8; n as usize];
    let started = Instant::now();
    while producer.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(30) {
        let limit = Duration::from_millis(1 + rng.below(10));
        let start = Instant::now();
        match rx.recv_timeout(limit) {
            Ok(x) => mine[x as usize] += 1,
            Err(RecvTimeoutError::Timeout) => {}
            // The producer died (a fault): the stream ended, drained.
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => t.check(false, || format!("recv_timeout: {e:?}")),
        }
        t.on_time(start.elapsed(), limit, "queue recv_timeout");
    }
    let produced = wait(&mut producer, t, "producer");
    t.faults += usize::from(injector.join().unwrap());
    q.shutdown();
    let _ = wait(&mut consumer, t, "consumer");
    for x in std::iter::from_fn(|| rx.try_recv().ok()) {
        mine[x as usize] += 1;
    }
    let theirs = seen.as_slice().unwrap();
    let counted = progress.get();
    let (mut twice, mut lost) = (0, 0);
    for i in 0..n as usize {
        let got = theirs[i] + mine[i];
        twice += usize::from(got > 1);
        lost += usize::from(got == 0 && (i as u64) < counted);
    }
    t.check(twice == 0, || format!("queue: {twice} records delivered twice"));
    // The documented loss: a consumer killed inside pop loses that record.
    let may_lose = usize::from(!hit_producer && matches!(f, Fault::Kill));
    t.check(lost <= may_lose, || format!("queue: {lost} records lost (allowed {may_lose}, producer ok: {produced})"));
    let _ = shmkit::admin::Gc::new().prefix(&base).run(); // a killed child's handles are garbage now
}

/// Waits for a child of a round, at most 30 s; true if it exited cleanly.
fn wait(child: &mut Child, t: &mut Tally, what: &str) -> bool {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.success();
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            t.check(false, || format!("{what} hung"));
            return false;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// A mutex, a reader-writer lock and a barrier shared with two processes
/// that loop over them; one is hit; the parent's timed calls stay on time.
fn round_locks(rng: &mut Rng, t: &mut Tally) {
    let base = unique("fh-l");
    let m = ShmMutex::create(&format!("{base}-m"), 0u64).unwrap();
    let rw = ShmRwLock::create(&format!("{base}-rw"), 0u64).unwrap();
    let _bar = ShmBarrier::create(&format!("{base}-bar"), 2).unwrap();
    let go = ShmEvent::create(&format!("{base}-go"), EventMode::Manual).unwrap();
    let mut kids: Vec<Child> = (0..2).map(|_| spawn_child(TEST, &format!("locker:{base}"), Stdio::null())).collect();
    let _ = go.wait_timeout(Duration::from_secs(10));
    let target = kids[rng.below(2) as usize].id();
    let f = fault(rng);
    let injector = inject(Duration::from_micros(rng.below(20_000)), f, move || Some(target));
    for _ in 0..20 {
        let limit = Duration::from_millis(5 + rng.below(20));
        let start = Instant::now();
        match m.lock_timeout(limit) {
            Ok(mut g) => *g += 1,
            Err(LockTimeoutError::OwnerDied(d)) => *d.acknowledge() += 1,
            Err(LockTimeoutError::Timeout) => {}
            Err(e) => t.check(false, || format!("mutex: {e:?}")),
        }
        t.on_time(start.elapsed(), limit, "mutex lock_timeout");
        let start = Instant::now();
        match rw.write_timeout(limit) {
            Ok(mut g) => *g += 1,
            Err(LockTimeoutError::OwnerDied(d)) => *d.acknowledge() += 1,
            Err(LockTimeoutError::Timeout) => {}
            Err(e) => t.check(false, || format!("rwlock: {e:?}")),
        }
        t.on_time(start.elapsed(), limit, "rwlock write_timeout");
    }
    t.faults += usize::from(injector.join().unwrap());
    send(target, Signal::CONT);
    for k in &mut kids {
        send(k.id(), Signal::KILL);
        let _ = k.wait();
    }
    // Every locker is gone now, however it ended: neither lock stays held.
    let limit = Duration::from_secs(2);
    let mutex_free = matches!(m.lock_timeout(limit), Ok(_) | Err(LockTimeoutError::OwnerDied(_)));
    let got = mutex_free && matches!(rw.write_timeout(limit), Ok(_) | Err(LockTimeoutError::OwnerDied(_)));
    t.check(got, || "a lock stayed held after every process holding it was killed".into());
    let _ = shmkit::admin::Gc::new().prefix(&base).run();
}

/// A child's part in a round.
fn child(arg: &str) {
    let parts: Vec<&str> = arg.split(':').collect();
    match parts.as_slice() {
        ["producer", base, n] => {
            let tx = ShmQueue::<u64>::open(&format!("{base}-q")).unwrap().sender().unwrap();
            let progress = ShmCounter::open(&format!("{base}-progress")).unwrap();
            for i in 0..n.parse::<u64>().unwrap() {
                tx.send(i).unwrap();
                progress.set(i + 1); // after the push: may be one behind
            }
        }
        ["consumer", base] => {
            let rx = ShmQueue::<u64>::open(&format!("{base}-q")).unwrap().receiver().unwrap();
            let mut seen = SharedArray::<u8, Ix1>::open(&format!("{base}-seen")).unwrap();
            let mut seen = seen.as_slice_mut().unwrap();
            while let Ok(x) = rx.recv() {
                seen[x as usize] += 1;
            }
        }
        ["creator", base] => {
            for i in 0..8 {
                std::mem::forget(SharedArray::<u8, Ix1>::create(&format!("{base}-{i}"), 1 << 20).unwrap());
            }
        }
        ["collector", base] => drop(shmkit::admin::Gc::new().prefix(base).run()),
        ["pusher", base] => {
            let list = shmkit::collections::ShmVec::<[u64; 4]>::open(&format!("{base}-v")).unwrap();
            for x in 0u64.. {
                if list.push([x; 4]).is_err() {
                    std::thread::sleep(Duration::from_secs(60));
                }
            }
        }
        ["helper"] => unreachable!("a helper serves in init, before this"),
        ["locker", base] => {
            let m = ShmMutex::<u64>::open(&format!("{base}-m")).unwrap();
            let rw = ShmRwLock::<u64>::open(&format!("{base}-rw")).unwrap();
            let bar = ShmBarrier::open(&format!("{base}-bar")).unwrap();
            ShmEvent::open(&format!("{base}-go")).unwrap().set();
            loop {
                let _ = m.lock().map(|mut g| *g += 1).or_else(|e| match e {
                    LockError::OwnerDied(d) => {
                        *d.acknowledge() += 1;
                        Ok(())
                    }
                    e => Err(e),
                });
                drop(rw.read());
                let _ = rw.write().map(|mut g| *g += 1).or_else(|e| match e {
                    LockError::OwnerDied(d) => {
                        *d.acknowledge() += 1;
                        Ok(())
                    }
                    e => Err(e),
                });
                let _ = bar.wait_timeout(Duration::from_millis(50));
            }
        }
        other => panic!("unknown child role {other:?}"),
    }
}

#[test]
fn fault_injection_harness() {
    shmkit::init(tasks);
    if let Some(arg) = child_arg() {
        return child(&arg);
    }
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let rounds = env("SHMKIT_FAULT_ROUNDS").unwrap_or(common::tier(300, 3000));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seed = env("SHMKIT_FAULT_SEED").unwrap_or(now.as_nanos() as u64);
    let _w = Watchdog::new(Duration::from_secs(60 + rounds * 2));
    let before = common::ours();
    let mut rng = Rng::new(seed);
    let mut t = Tally::default();
    let start = Instant::now();
    let pool = Pool::builder().tasks(tasks).helpers(2).pipeline(2).in_test(TEST).build().unwrap();
    for _ in 0..rounds {
        match rng.below(14) {
            0 => round_map(&pool, &mut rng, &mut t),
            1 => round_submit(&pool, &mut rng, &mut t),
            2 => round_in_place(&pool, &mut rng, &mut t, true),
            3 | 11 => round_in_place(&pool, &mut rng, &mut t, false),
            12 => round_sum(&pool, &mut rng, &mut t),
            13 => round_lent(&pool, &mut rng, &mut t),
            4 => round_queue(&mut rng, &mut t),
            5 => round_locks(&mut rng, &mut t),
            6 | 7 => round_cancel(&pool, &mut rng, &mut t),
            8 => round_gc(&mut rng, &mut t),
            9 => round_list(&mut rng, &mut t),
            _ => round_start(&mut rng, &mut t),
        }
        t.rounds += 1;
    }
    let helpers = pool.helper_pids();
    drop(pool);
    t.check(helpers.iter().all(|&p| !common::alive(p)), || "helpers outlived the pool".into());
    let left: Vec<String> = common::ours().difference(&before).cloned().collect();
    t.check(left.is_empty(), || format!("/dev/shm entries left: {left:?}"));
    println!(
        "fault harness: {} rounds, {} faults injected, {} violations, in {:.1} s (seed {seed})",
        t.rounds,
        t.faults,
        t.violations.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(t.violations.is_empty(), "violations: {:#?}", t.violations);
    assert!(
        t.faults as u64 * 2 > rounds,
        "only {} of {rounds} rounds injected a fault: the harness tested little",
        t.faults
    );
}
