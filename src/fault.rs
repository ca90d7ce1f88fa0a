//! Fault points for tests: a process whose `SHMKIT_FAULT_INJECT` variable
//! names a point SIGKILLs itself when it gets there. What lets a test kill
//! a waker between its state change and its wake-up, a window too short
//! to hit with a signal from outside. Read once; costs one load otherwise.

use std::sync::OnceLock;

/// The variable naming the point to die at.
pub(crate) const VAR: &str = "SHMKIT_FAULT_INJECT";

/// Dies here (SIGKILL, as an OOM kill would) if this process was told to.
pub(crate) fn point(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    if ARMED.get_or_init(|| std::env::var(VAR).ok()).as_deref() == Some(name) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
