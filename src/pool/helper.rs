//! The helper side: what a helper process runs.
//!
//! A helper is this program (or a separate helper binary) started by a
//! pool with `SHMKIT_HELPER_SOCKET` set. [`init`] at the top of `main`
//! notices that, serves tasks until told to stop, and exits; in the
//! coordinator it returns at once.

use std::cell::RefCell;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use super::cache::Cache;
use super::registry::Registry;
use super::spawn::{PARENT_VAR, SOCKET_VAR};
use super::spin::{spin, WINDOW};
use super::wire::{send, Failure, Fill, FrameReader, FromHelper, ToHelper};

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
    if let Some(address) = std::env::var_os(SOCKET_VAR) {
        serve_at(&address.to_string_lossy(), tasks);
    }
}

/// The `main` of a separate helper binary: serves `tasks` for the pool
/// that started it, then exits. Exits with status 2 if no pool did.
pub fn serve(tasks: fn(&mut Registry)) -> ! {
    init(tasks);
    eprintln!("shmkit helper: not started by a shmkit pool ({SOCKET_VAR} is not set)");
    std::process::exit(2)
}

/// True in a process a pool started as a helper.
pub fn is_helper() -> bool {
    std::env::var_os(SOCKET_VAR).is_some()
}

fn serve_at(address: &str, tasks: fn(&mut Registry)) -> ! {
    watch_parent();
    let addr = SocketAddr::from_abstract_name(address.as_bytes()).unwrap_or_else(|e| die(e));
    let stream = UnixStream::connect_addr(&addr).unwrap_or_else(|e| die(e));
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
        // Each result is written as soon as it exists: if this helper
        // dies in the next task, the coordinator knows this one finished.
        let results = args.iter().map(|a| run_one(&registry, &mut cache, task, a)).collect();
        if send(&mut writer, &FromHelper::Done { job, results }).is_err() {
            break;
        }
    }
    std::process::exit(0)
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

/// Ends this helper when its coordinator dies: `PR_SET_PDEATHSIG` kills it
/// at once, and a watcher thread polling `getppid()` covers what that
/// misses (the parent dying before the call, or a reparenting).
fn watch_parent() {
    let parent: Option<i32> = std::env::var(PARENT_VAR).ok().and_then(|p| p.parse().ok());
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let orphaned = move || rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != parent;
    if orphaned() {
        crate::os::exit_now(1);
    }
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        if orphaned() {
            crate::os::exit_now(1);
        }
    });
}
