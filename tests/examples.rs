//! Every example runs to its own check, small: each prints a `verified`
//! line (or its result) only after checking what it computed. (The MPI
//! examples run under `tests/mpi.rs`, `manager` under
//! `tests/collections.rs`, `pool_helper` under `tests/pool.rs`, the web
//! example under its own crate's tests.)

mod common;

use std::time::Duration;

/// Runs example `name` with `args` under a watchdog; its stdout.
fn run(name: &str, args: &[&str]) -> String {
    let exe = common::example(name);
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = common::dies_with_parent(&mut cmd).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = rx.recv_timeout(Duration::from_secs(120)).expect("the example ran over 2 minutes").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{name}: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn double_in_place_verifies_every_element() {
    let out = run("double_in_place", &["--elements", "1000003", "--rounds", "2"]);
    assert!(out.contains("verified: all 1000003 elements doubled in place 2 times"), "{out}");
}

#[test]
fn parallel_sum_matches_the_closed_form() {
    let out = run("parallel_sum", &["--elements", "1000000"]);
    assert!(out.contains("verified"), "{out}");
}

#[test]
fn pipeline_processes_every_record_exactly_once() {
    let out = run("pipeline", &["--items", "20000"]);
    assert!(out.contains("verified: every record processed exactly once"), "{out}");
}

/// It checks a row of the helpers' margins against a replay here, and
/// fails (exit status) if they differ.
#[test]
fn monte_carlo_margins_match_a_replay() {
    let out = run("monte_carlo", &["--games", "2000"]);
    assert!(out.contains(" games in ") && out.contains("P(win)"), "{out}");
}

#[test]
fn heat_diffusion_prints_its_checksum() {
    let out = run("heat_diffusion", &["--size", "64", "--steps", "50"]);
    assert!(out.lines().any(|l| l.starts_with("checksum ")), "{out}");
}

/// The stream example's programs, started in any order: a consumer
/// before the camera, killed mid-stream and started again; the camera
/// goes on, and the new consumer reads whole frames to the end.
#[test]
fn stream_camera_feeds_consumers_that_come_and_go() {
    use std::process::{Command, Stdio};
    let _w = common::Watchdog::new(Duration::from_secs(240));
    let name = common::unique("camera");
    let (camera, stats) = (common::example("stream_camera"), common::example("stream_stats"));
    let spawn = |exe: &std::path::Path, args: &[&str]| {
        let mut cmd = Command::new(exe);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        common::dies_with_parent(&mut cmd).spawn().unwrap()
    };
    let mut first = spawn(&stats, &["--name", &name]); // before the camera: it waits
    std::thread::sleep(Duration::from_millis(300));
    let cam = spawn(&camera, &["--name", &name, "--fps", "100", "--frames", "120"]);
    std::thread::sleep(Duration::from_millis(500));
    first.kill().unwrap(); // a consumer killed mid-stream
    first.wait().unwrap();
    let second = spawn(&stats, &["--name", &name]);
    let cam = cam.wait_with_output().unwrap();
    let cam_out = String::from_utf8_lossy(&cam.stdout);
    assert!(cam.status.success() && cam_out.contains("camera: done"), "{cam_out}");
    assert!(cam_out.contains("camera: frame 120"), "the camera went on to its last frame: {cam_out}");
    let second = second.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success() && out.contains("verified: every frame read was whole"), "{out}");
    assert!(!common::shm_exists(&name), "the camera's stream is gone with it");
}
