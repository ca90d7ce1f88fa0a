//! The helper side: what a helper process runs.
//!
//! A helper is this program (or a separate helper binary) started by a
//! pool with a socket to serve on (see `role`). [`init`] at the top of
//! `main` notices that, serves tasks until told to stop, and exits; in
//! any other process it returns at once.

use std::cell::RefCell;
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use super::cache::Cache;
use super::region::Region;
use super::registry::Registry;
use super::ring::{self, Ring};
use super::role;
use super::spawn::STATUS_VAR;
use super::status;
use super::wire::{
    blobs_len, fits, frame, send, too_large, Failure, Fill, FrameReader, FromHelper, ToHelper, PROTOCOL,
};

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
        SERVING.store(true, Ordering::SeqCst);
        serve_at(fd, tasks);
    }
}

/// Set once this process serves as a helper (inside [`init`]).
static SERVING: AtomicBool = AtomicBool::new(false);

/// Called by `PoolBuilder::build`: in a process a pool started as a helper
/// whose `main` did not call [`init`] first, building a pool would start
/// helpers that do the same, without end. Instead, tell the coordinator
/// (its `build` returns `PoolError::NotInitialized`) and exit at once.
/// Processes that helpers' tasks start are not helpers (see `role`): they
/// build pools as any program does.
pub(crate) fn refuse_pool_in_uninitialised_helper() {
    if SERVING.load(Ordering::SeqCst) {
        return; // a task building a pool of its own: fine
    }
    let Some(fd) = role::helper_socket() else { return };
    eprintln!(
        "shmkit helper {}: main built a pool without calling shmkit::init(tasks) first; exiting",
        std::process::id()
    );
    if let Some(stream) = role::adopt(fd) {
        let _ = send(&mut &stream, &FromHelper::NotInitialized);
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

/// True in a process a pool started as a helper (not in the processes
/// its tasks start).
pub fn is_helper() -> bool {
    SERVING.load(Ordering::SeqCst) || role::helper_socket().is_some()
}

fn serve_at(fd: std::os::fd::RawFd, tasks: fn(&mut Registry)) -> ! {
    let stream = role::adopt(fd).unwrap_or_else(|| die("the helper socket is taken"));
    watch_pool(&stream);
    let (region, index) = own_region().unwrap_or_else(|e| die(e));
    let word = region.word(index).expect("checked by own_region");
    let (jobs, out) = (region.jobs(index).expect("checked"), region.results(index).expect("checked"));
    let mut registry = Registry::new();
    tasks(&mut registry);
    panic::set_hook(Box::new(record_panic));
    let ready = FromHelper::Ready { protocol: PROTOCOL, tasks: registry.names() };
    send(&mut &stream, &ready).unwrap_or_else(|e| die(e));
    let (mut reader, mut cache) = (FrameReader::new(), Cache::default());
    // Jobs come through the job ring from here on, results go back through
    // the result ring; the socket only carries doorbells. Ends when the
    // coordinator says Exit or goes away.
    loop {
        let Some(msg) = reader.next::<ToHelper>() else {
            match next_jobs(&mut reader, &jobs, &stream) {
                true => continue,
                false => break,
            }
        };
        let Ok(ToHelper::Run { job, task, args }) = msg else { break };
        // Recorded before the job touches anything: if this helper is
        // killed or dies now, its driver blames this job and no other.
        status::begin(word, job);
        let results = args.iter().map(|a| run_one(&registry, &mut cache, task, a)).collect();
        let Ok(bytes) = frame(&FromHelper::Done { job, results: fit(results) }) else { break };
        // Each result is in the ring (shared memory: it outlives this
        // process) before the next job starts: if this helper dies in the
        // next one, its driver still reads this one.
        if ring::write_all(&out, &stream, &bytes, None).is_err() {
            break;
        }
        status::finish(word, job);
    }
    std::process::exit(0)
}

/// Replaces each result or error that would make the message too large
/// to send with a short `Codec` failure saying so, so that the task fails
/// and not the helper.
fn fit(mut results: Vec<Result<Vec<u8>, Failure>>) -> Vec<Result<Vec<u8>, Failure>> {
    let size = |r: &Result<Vec<u8>, Failure>| match r {
        Ok(bytes) => blobs_len([bytes.as_slice()]),
        Err(f) => postcard::to_stdvec(f).map_or(usize::MAX, |v| v.len()).saturating_add(10),
    };
    let mut total = 0usize;
    for r in &mut results {
        let len = size(r);
        if !fits(total.saturating_add(len)) {
            let what = if r.is_ok() { "result" } else { "error" };
            *r = Err(Failure::Codec(format!("the {what} takes {}", too_large(len))));
        }
        total = total.saturating_add(size(r));
    }
    results
}

/// Reads more of the job ring, waiting for it (spinning briefly, then
/// asleep on the doorbell); rings the driver if it waits for room. False
/// when the coordinator is gone or the ring is broken.
fn next_jobs(reader: &mut FrameReader, jobs: &Ring<'_>, stream: &UnixStream) -> bool {
    loop {
        match reader.fill_ring(jobs) {
            Ok(Fill::Data) => {
                if jobs.writer_to_wake() {
                    ring::ring_bell(stream);
                }
                return true;
            }
            Ok(_) => {}
            Err(_) => return false,
        }
        if ring::wait_readable(jobs, stream, None).is_err() {
            return false;
        }
    }
}

/// The pool's segment and this helper's index in it, from
/// `SHMKIT_HELPER_STATUS` (checked: it comes from the environment).
fn own_region() -> Result<(Region, usize), String> {
    let value = std::env::var(STATUS_VAR).map_err(|_| format!("{STATUS_VAR} is not set"))?;
    let (name, index) = value.rsplit_once(':').ok_or_else(|| format!("{STATUS_VAR}={value} is not NAME:INDEX"))?;
    let index: usize = index.parse().map_err(|_| format!("{STATUS_VAR}={value} has no index"))?;
    let region = Region::open(name).map_err(|e| e.to_string())?;
    match region.word(index) {
        Some(_) => Ok((region, index)),
        None => Err(format!("{STATUS_VAR}={value}: no such helper")),
    }
}

fn die(e: impl std::fmt::Display) -> ! {
    eprintln!("shmkit helper: cannot reach the pool: {e}");
    std::process::exit(3)
}

/// Runs one call, turning a panic into [`Failure::Panic`].
fn run_one(registry: &Registry, cache: &mut Cache, task: u32, args: &[u8]) -> Result<Vec<u8>, Failure> {
    match panic::catch_unwind(AssertUnwindSafe(|| registry.run(cache, task, args))) {
        Ok(result) => result,
        Err(_) => Err(Failure::Panic(LAST_PANIC.take().unwrap_or_else(|| "panic".to_owned()))),
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panic hook: keeps "message at file:line" for the error sent back,
/// instead of printing it (the coordinator reports it).
fn record_panic(info: &panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let msg = payload.downcast_ref::<&str>().copied().or(payload.downcast_ref::<String>().map(String::as_str));
    let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
    LAST_PANIC.set(Some(format!("{}{at}", msg.unwrap_or("Box<dyn Any>"))));
}

/// Ends this helper when its pool's process dies: `PR_SET_PDEATHSIG`
/// kills it with its parent at once, and a watcher thread exits when the
/// socket's other end is gone (`POLLRDHUP`), which covers what that misses:
/// a pool that died before this helper got here, or a launcher in between
/// (then the parent is the launcher). Run before anything slow.
fn watch_pool(stream: &UnixStream) {
    use rustix::event::{poll, PollFd, PollFlags};
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let Ok(watch) = stream.try_clone() else { return };
    std::thread::spawn(move || loop {
        let mut fds = [PollFd::new(&watch, PollFlags::RDHUP)];
        match poll(&mut fds, None) {
            Ok(_) => crate::os::exit_now(1), // hung up, or an error on the socket
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return, // cannot watch; the death signal still works
        }
    });
}
