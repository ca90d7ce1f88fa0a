//! Fault points for tests: a process whose `SHMKIT_FAULT_INJECT` variable
//! names a point SIGKILLs itself (or pauses, for a `pause` point) when it
//! gets there. What lets a test kill a waker between its state change and
//! its wake-up, a window too short to hit with a signal from outside.
//!
//! Compiled only with the `fault-injection` feature (which this crate's
//! own tests turn on through a dev-dependency on itself); otherwise every
//! point is an empty inline function, so no variable in a user's
//! environment can make a shmkit program kill itself.

/// The variable naming the point to die at.
#[cfg(any(test, feature = "fault-injection"))]
pub(crate) const VAR: &str = "SHMKIT_FAULT_INJECT";

/// The armed point, read once.
#[cfg(any(test, feature = "fault-injection"))]
fn armed() -> Option<&'static str> {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ARMED.get_or_init(|| std::env::var(VAR).ok()).as_deref()
}

/// Dies here (SIGKILL, as an OOM kill would) if this process was told to.
#[cfg(any(test, feature = "fault-injection"))]
pub(crate) fn point(name: &str) {
    if armed() == Some(name) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Sleeps 100 ms here if this process was told to: widens a race window
/// so that a test can land in it every time.
#[cfg(any(test, feature = "fault-injection"))]
pub(crate) fn pause(name: &str) {
    if armed() == Some(name) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Without the feature: nothing.
#[cfg(not(any(test, feature = "fault-injection")))]
#[inline(always)]
pub(crate) fn point(_name: &str) {}

/// Without the feature: nothing.
#[cfg(not(any(test, feature = "fault-injection")))]
#[inline(always)]
pub(crate) fn pause(_name: &str) {}
