//! Panics in tasks: caught per item and sent back as failures with their
//! message and place, instead of being printed by the helper.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

use crate::pool::transport::wire::Failure;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Makes panics in this process record "message at file:line" for
/// [`catching`] instead of printing it (helpers only: the coordinator
/// reports the failure).
pub(crate) fn install_hook() {
    panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload.downcast_ref::<&str>().copied().or(payload.downcast_ref::<String>().map(String::as_str));
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        LAST_PANIC.set(Some(format!("{}{at}", msg.unwrap_or("Box<dyn Any>"))));
    }));
}

/// Runs `f`, turning a panic into [`Failure::Panic`]. The task's state is
/// its own arguments, dropped with the panic, so nothing half-updated is
/// seen again (hence `AssertUnwindSafe`).
pub(crate) fn catching<R>(f: impl FnOnce() -> Result<R, Failure>) -> Result<R, Failure> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(Failure::Panic(LAST_PANIC.take().unwrap_or_else(|| "panic".to_owned()))),
    }
}
