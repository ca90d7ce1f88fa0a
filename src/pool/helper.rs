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
use super::registry::Registry;
use super::role;
use super::spawn::STATUS_VAR;
use super::spin::{spin, WINDOW};
use super::status::{self, Status};
use super::wire::{blobs_len, fits, send, too_large, Failure, Fill, FrameReader, FromHelper, ToHelper};

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
    let status = status_word().unwrap_or_else(|e| die(e));
    let word = status.0.word(status.1).expect("checked by status_word");
    let mut registry = Registry::new();
    tasks(&mut registry);
    panic::set_hook(Box::new(record_panic));
    let (mut reader, mut writer) = (FrameReader::new(), &stream);
    send(&mut writer, &FromHelper::Ready { tasks: registry.names() }).unwrap_or_else(|e| die(e));
    let mut cache = Cache::default();
    // Ends when the coordinator says Exit or goes away (EOF).
    loop {
        let Some(msg) = reader.next::<ToHelper>() else {
            match wait_for_input(&mut reader, &stream) {
                true => continue,
                false => break,
            }
        };
        let Ok(ToHelper::Run { job, task, args }) = msg else { break };
        // Recorded before the job touches anything: if this helper is
        // killed or dies now, its driver blames this job and no other.
        status::begin(word, job);
        // Each result is written as soon as it exists: if this helper
        // dies in the next task, the coordinator knows this one finished.
        let results = args.iter().map(|a| run_one(&registry, &mut cache, task, a)).collect();
        if send(&mut writer, &FromHelper::Done { job, results: fit(results) }).is_err() {
            break;
        }
        // Written: a kill from now on loses nothing of this job.
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

/// Waits for more input: polls briefly (the next task often follows at
/// once), then blocks. False at end of stream.
fn wait_for_input(reader: &mut FrameReader, stream: &UnixStream) -> bool {
    let quick = spin(WINDOW, || match reader.fill(stream, false) {
        Ok(Fill::WouldBlock) => None,
        other => Some(other),
    });
    matches!(quick.unwrap_or_else(|| reader.fill(stream, true)), Ok(Fill::Data))
}

/// The pool's status segment and this helper's index in it, from
/// `SHMKIT_HELPER_STATUS` (checked: it comes from the environment).
fn status_word() -> Result<(Status, usize), String> {
    let value = std::env::var(STATUS_VAR).map_err(|_| format!("{STATUS_VAR} is not set"))?;
    let (name, index) = value.rsplit_once(':').ok_or_else(|| format!("{STATUS_VAR}={value} is not NAME:INDEX"))?;
    let index: usize = index.parse().map_err(|_| format!("{STATUS_VAR}={value} has no index"))?;
    let status = Status::open(name).map_err(|e| e.to_string())?;
    match status.word(index) {
        Some(_) => Ok((status, index)),
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
