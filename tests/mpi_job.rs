//! The MPI tests from plain `cargo test`. `tests/mpi.rs` needs the `mpi`
//! feature and OpenMPI; this test installs OpenMPI and libclang with
//! apt-get when they are missing (as root, as in CI; otherwise it fails
//! with the command to run) and runs `cargo test --features mpi --test mpi`
//! in `target/mpi`, a target dir of its own, so that the feature build
//! never replaces the artefacts of this run; then the MPI doctests.

mod common;

use std::time::Duration;

#[test]
fn distributed_arrays_pass_their_checks_under_mpirun() {
    let _w = common::Watchdog::new(Duration::from_secs(1800));
    common::setup::ensure_mpi();
    let limit = Duration::from_secs(1500);
    let out = common::setup::cargo_in("mpi", &["test", "-p", "shmkit", "--features", "mpi", "--test", "mpi"], limit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("mpi: ")).collect();
    lines.iter().for_each(|l| println!("{l}"));
    assert!(lines.iter().any(|l| l.contains("mpi_sum matches")), "the MPI checks did not run to the end:\n{stdout}");
    // The MPI guide's snippet and the mpi module's doctests compile (they
    // run only under mpirun, so they are `no_run`).
    let docs = common::setup::cargo_in(
        "mpi",
        &["test", "-p", "shmkit", "--features", "mpi", "--doc", "--", "mpi", "Mpi"],
        limit,
    );
    let out = String::from_utf8_lossy(&docs.stdout);
    assert!(out.contains("guides::Mpi"), "the MPI guide was not compiled:\n{out}");
}
