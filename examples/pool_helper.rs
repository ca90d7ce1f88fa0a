//! A separate helper binary: a pool started with
//! `.program("target/release/examples/pool_helper")` runs its helpers from
//! this program instead of re-running its own executable. It must register
//! the same tasks as the coordinator; here both include one task module.
//!
//! Run on its own, it says it was not started by a pool and exits with 2.

#[path = "../tests/common/tasks.rs"]
mod tasks;

fn main() {
    shmkit::serve(tasks::register)
}
