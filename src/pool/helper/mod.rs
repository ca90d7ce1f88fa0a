//! The helper side: what a helper process runs.
//!
//! A helper is this program (or a separate helper binary) started by a
//! pool with a socket to serve on (see `role`). [`init`] at the top of
//! `main` notices that, serves tasks until told to stop, and exits; in
//! any other process it returns at once.

pub(crate) mod builtin;
pub(crate) mod cache;
pub(crate) mod claim;
pub(crate) mod panics;
pub(crate) mod registry;

use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;

use crate::pool::transport::region::Region;
use crate::pool::transport::ring::{self, Peer, Ring};
use crate::pool::transport::wire::{
    fits, frame_into, send, too_large, Failure, Fill, FrameReader, FromHelper, Items, ToHelper, PROTOCOL,
};
use crate::role::{self, STATUS_VAR};
use cache::Cache;
use registry::Registry;

/// Makes this process serve as a pool helper if a pool started it;
/// otherwise returns at once. Call it first thing in `main` (or in a test
/// that builds a pool), with the same `tasks` the pool is built with.
///
/// ```no_run
/// fn square(x: u64) -> u64 { x * x }
/// fn tasks(r: &mut shmkit::Registry) { r.add(square); }
///
/// fn main() -> anyhow::Result<()> {
///     shmkit::init(tasks); // in a helper, never returns
///     let pool = shmkit::Pool::new(tasks)?;
///     assert_eq!(pool.map(square, [1, 2, 3]).into_iter().collect::<Result<Vec<_>, _>>()?, [1, 4, 9]);
///     Ok(())
/// }
/// ```
pub fn init(tasks: fn(&mut Registry)) {
    if let Some(fd) = role::helper_socket() {
        role::set_serving();
        check_test(fd);
        serve_at(fd, tasks);
    }
}

/// In a helper of a pool built inside a `#[test]`: refuses to serve from
/// another test than the one that built the pool (its helpers re-run the
/// test binary on that test; see `PoolBuilder::in_test`).
fn check_test(fd: std::os::fd::RawFd) {
    let Ok(want) = std::env::var(role::TEST_VAR) else { return };
    let here = std::thread::current().name().map(str::to_owned).unwrap_or_default();
    if here == want {
        return;
    }
    eprintln!(
        "shmkit helper {}: serving from test {here:?}, but the pool was built in test {want:?}; exiting",
        std::process::id()
    );
    if let Some(stream) = role::adopt(fd) {
        let _ = send(&mut &stream, &FromHelper::WrongTest { test: here });
    }
    crate::os::exit_now(3)
}

/// The `main` of a separate helper binary: serves `tasks` for the pool
/// that started it, then exits. Exits with status 2 if no pool did.
pub fn serve(tasks: fn(&mut Registry)) -> ! {
    init(tasks);
    eprintln!("shmkit helper: not started by a shmkit pool (run it through PoolBuilder::program, not by hand)");
    std::process::exit(2)
}

/// For a helper that must run code of its own before it serves (a
/// Python helper imports its coordinator's main script first): lets
/// that code use shmkit (segments, queues) instead of being stopped as a
/// helper that forgot [`init`]. Call [`serve`] next. Returns false, and
/// does nothing, in a process no pool started.
pub fn prepare_helper() -> bool {
    match role::helper_socket() {
        Some(_) => {
            role::set_serving();
            true
        }
        None => false,
    }
}

/// True in a process a pool started as a helper (not in the processes
/// its tasks start).
pub fn is_helper() -> bool {
    role::is_serving() || role::helper_socket().is_some()
}

fn serve_at(fd: std::os::fd::RawFd, tasks: fn(&mut Registry)) -> ! {
    let stream = role::adopt(fd).unwrap_or_else(|| die("the helper socket is taken"));
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let (region, index) = own_region().unwrap_or_else(|e| die(e));
    let status = region.status(index).expect("checked by own_region");
    let cpu = region.cpu(index).expect("checked by own_region");
    let (jobs, out) = (region.jobs(index).expect("checked"), region.results(index).expect("checked"));
    let mut registry = Registry::new();
    tasks(&mut registry);
    panics::install_hook();
    let ready = FromHelper::Ready { protocol: PROTOCOL, tasks: registry.names(), pid: std::process::id() };
    crate::fault::point("helper-before-ready");
    send(&mut &stream, &ready).unwrap_or_else(|e| die(e)); // fails if the pool is gone already
    watch_pool(&stream); // after Ready: a thread's start is not on the way to the pool's
    let (mut reader, mut cache, mut encoded) = (FrameReader::new(), Cache::default(), Vec::new());
    // Jobs come through the job ring from here on, results go back through
    // the result ring; the socket only carries doorbells. Ends when the
    // coordinator says Exit or goes away.
    loop {
        let Some(msg) = reader.next::<ToHelper>() else {
            match next_jobs(&mut reader, &jobs, &stream, &mut cache) {
                true => continue,
                false => break,
            }
        };
        let Some(job) = msg.as_ref().ok().and_then(ToHelper::job) else { break };
        // Recorded before the job touches anything: if this helper is
        // killed or dies now, its driver blames this job and no other.
        // A job cancelled while it waited in this helper's pipeline is
        // skipped here, never begun (see `status`).
        let answer = match status.begin(job) {
            true => {
                // Where it runs, for a caller spinning for the answer (see `lane`).
                cpu.store(rustix::thread::sched_getcpu() as u32, Ordering::Relaxed);
                let results = match msg {
                    Ok(ToHelper::Run { task, count, args, .. }) => registry.run(&mut cache, task, &args, count),
                    Ok(ToHelper::Claim { task, claim, args, .. }) => {
                        claim::run(&registry, &mut cache, &region, task, claim, &args)
                    }
                    _ => Items::with_count(0), // not a job: `job()` said so above
                };
                FromHelper::Done { job, results: fit(results) }
            }
            false => {
                status.skipping(job); // nothing of it ran: a kill now is harmless
                FromHelper::Skipped { job }
            }
        };
        encoded.clear();
        if frame_into(&mut encoded, &answer).is_err() {
            break; // cannot happen after `fit`; if it did, the job fails as a death
        }
        // The results are in the ring (shared memory: it outlives this
        // process) before the next job starts: if this helper dies in the
        // next one, its driver still reads these.
        if ring::write_all(&out, &Peer::socket(&stream), &encoded, None).is_err() {
            break;
        }
        status.finish(job);
    }
    std::process::exit(0)
}

/// Makes `results` fit one message: an error too large to send becomes a
/// short `Codec` failure saying so, and if the results together are still
/// too large, every result of the job does (its errors stay), so that the
/// tasks fail and not the helper.
fn fit(mut results: Items) -> Items {
    let mut total = results.data.len();
    for (_, f) in &mut results.failures {
        let len = encoded_len(f);
        if !fits(len) {
            *f = Failure::Codec(format!("the error takes {}", too_large(len)));
        }
        total = total.saturating_add(encoded_len(f));
    }
    if fits(total) {
        return results;
    }
    let why = Failure::Codec(format!("the results take {}", too_large(results.data.len())));
    let mut failures = results.failures.into_iter().peekable();
    let all = (0..results.count).map(|i| failures.next_if(|(at, _)| *at == i).unwrap_or((i, why.clone())));
    Items { data: Vec::new(), count: results.count, failures: all.collect() }
}

/// The bytes `f` takes in a message (`usize::MAX` if it cannot be encoded).
fn encoded_len(f: &Failure) -> usize {
    postcard::to_stdvec(f).map_or(usize::MAX, |v| v.len())
}

/// Reads more of the job ring, waiting for it (spinning briefly, then
/// asleep on the doorbell); rings the driver if it waits for room. False
/// when the coordinator is gone or the ring is broken. While it waits
/// with arrays mapped, it looks for arrays removed since (after
/// `IDLE_LOOK`, then less and less often) and unmaps them then:
/// unmapping a big populated array takes tens of milliseconds, which
/// would otherwise fall inside the next task.
fn next_jobs(reader: &mut FrameReader, jobs: &Ring<'_>, stream: &UnixStream, cache: &mut Cache) -> bool {
    let mut look = IDLE_LOOK;
    loop {
        match reader.fill_ring(jobs) {
            Ok(Fill::Data) => {
                jobs.wake_writer(&Peer::socket(stream));
                return true;
            }
            Ok(_) => {}
            Err(_) => return false,
        }
        let limit = (!cache.is_empty()).then_some(look);
        match ring::wait_readable(jobs, &Peer::socket(stream), limit, None) {
            Err(_) => return false,
            Ok(false) => {
                cache.prune();
                look = (look * 2).min(IDLE_LOOK_MOST); // a long idle wakes rarely
            }
            Ok(true) => {}
        }
    }
}

/// How soon an idle helper with arrays mapped first looks for removed
/// ones, and the longest it waits between looks later in a long idle.
const IDLE_LOOK: std::time::Duration = std::time::Duration::from_millis(100);
const IDLE_LOOK_MOST: std::time::Duration = std::time::Duration::from_millis(3200);

/// The pool's segment and this helper's index in it, from
/// `SHMKIT_HELPER_STATUS` (checked: it comes from the environment).
fn own_region() -> Result<(Region, usize), String> {
    let value = std::env::var(STATUS_VAR).map_err(|_| format!("{STATUS_VAR} is not set"))?;
    let (name, index) = value.rsplit_once(':').ok_or_else(|| format!("{STATUS_VAR}={value} is not NAME:INDEX"))?;
    let index: usize = index.parse().map_err(|_| format!("{STATUS_VAR}={value} has no index"))?;
    let region = Region::open(name).map_err(|e| e.to_string())?;
    match region.status(index) {
        Some(_) => Ok((region, index)),
        None => Err(format!("{STATUS_VAR}={value}: no such helper")),
    }
}

fn die(e: impl std::fmt::Display) -> ! {
    eprintln!("shmkit helper: cannot reach the pool: {e}");
    std::process::exit(3)
}

/// Ends this helper when its pool's process dies. `PR_SET_PDEATHSIG`
/// (set first thing in `serve_at`) kills it with its parent at once; this
/// watcher thread exits when the socket's other end is gone (`POLLRDHUP`),
/// which covers what that misses: a pool that died before this helper got
/// here (then sending Ready fails first), or a launcher in between (then
/// the parent is the launcher).
fn watch_pool(stream: &UnixStream) {
    use rustix::event::{poll, PollFd, PollFlags};
    let Ok(watch) = stream.try_clone() else { return };
    // A thread that cannot start leaves the death signal, and the
    // hang-up seen when the helper next waits for work.
    let _ = std::thread::Builder::new().name("shmkit-watch".into()).spawn(move || loop {
        let mut fds = [PollFd::new(&watch, PollFlags::RDHUP)];
        match poll(&mut fds, None) {
            Ok(_) => crate::os::exit_now(1), // hung up, or an error on the socket
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return, // cannot watch; the death signal still works
        }
    });
}
