//! The `web_offload` example under load: while CPU work runs in helpers,
//! the server keeps answering other requests, and no helper dies.
//! Bounded traffic, loopback only.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{alive, Watchdog};

/// One HTTP/1.1 GET on loopback; returns (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read reply");
    let status = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn pids(port: u16) -> Vec<u32> {
    let mut pids: Vec<u32> = serde_json::from_str(&get(port, "/helpers").1).expect("pid list");
    pids.sort();
    pids
}

/// Starts the `web_offload` example on a free port; returns it and the port.
fn start_server() -> (std::process::Child, u16) {
    let exe = env!("CARGO_BIN_EXE_web_offload");
    let mut server =
        common::dies_with_parent(Command::new(exe).args(["--port", "0"]).stdout(Stdio::piped())).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect("listening line");
    (server, port)
}

/// Ctrl-C for the server, then its exit status.
fn stop_server(server: std::process::Child) -> std::process::ExitStatus {
    common::signal(server.id(), rustix::process::Signal::INT).unwrap();
    common::wait_with_watchdog(server, Duration::from_secs(10))
}

#[test]
fn server_stays_responsive_while_helpers_compute_and_no_helper_dies() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let (server, port) = start_server();
    let before = pids(port);
    assert_eq!(before.len(), std::thread::available_parallelism().map_or(1, |n| n.get()));

    // Four CPU-heavy requests: more work than helpers, so some queue.
    let start = Instant::now();
    let heavy: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || (get(port, &format!("/simulate?a={i}&b=63&games=60000")), Instant::now())))
        .collect();
    std::thread::sleep(Duration::from_millis(30));
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(get(port, "/health"), (200, "ok".to_owned()));
        slowest = slowest.max(t.elapsed());
    }
    let health_done = Instant::now();
    let finished: Vec<_> = heavy.into_iter().map(|h| h.join().unwrap()).collect();
    for ((status, body), _) in &finished {
        assert_eq!(*status, 200, "{body}");
        let summary: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(summary["games"], 60000);
    }
    let last = finished.iter().map(|(_, t)| *t).max().unwrap();
    assert!(last > health_done, "the health checks ran while CPU work was still going on");
    assert!(
        slowest < Duration::from_millis(250),
        "a health check took {slowest:?} while work ran ({:?} in all)",
        start.elapsed()
    );
    assert_eq!(get(port, "/simulate?a=99&b=0&games=1").0, 400);
    assert_eq!(pids(port), before, "a helper died or was replaced");

    let status = stop_server(server);
    assert!(status.success(), "server exit: {status}");
    assert!(before.iter().all(|&p| !alive(p)), "helpers outlived the server");
}

/// Requests past their deadline answer 504 and cancel their tasks: the
/// helpers are free for the next request at once (dropping a task's future
/// cancels it, so `tokio::time::timeout` around `pool.submit` is all it takes).
#[test]
fn requests_past_their_deadline_free_their_helpers() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let (server, port) = start_server();
    let helpers = pids(port).len();
    // More long requests than helpers, each with a 300 ms deadline.
    let start = Instant::now();
    let late: Vec<_> = (0..3 * helpers)
        .map(|i| std::thread::spawn(move || get(port, &format!("/simulate?a={i}&b=63&games=10000000&deadline_ms=300"))))
        .collect();
    for t in late {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 504, "{body}");
        assert!(body.contains("cancelled"), "{body}");
    }
    assert!(start.elapsed() < Duration::from_secs(3), "the 504s took {:?}", start.elapsed());
    let start = Instant::now();
    let (status, body) = get(port, "/simulate?a=1&b=2&games=1000");
    assert_eq!(status, 200, "{body}");
    assert!(start.elapsed() < Duration::from_secs(1), "the next request waited {:?}", start.elapsed());
    assert!(stop_server(server).success());
}
