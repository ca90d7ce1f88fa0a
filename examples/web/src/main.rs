//! A web server that offloads CPU work to helper processes (the FastAPI +
//! multiprocessing pattern done right): the handler `.await`s pool work, so the async runtime keeps
//! serving other requests, and no process is ever forked from the
//! multi-threaded server, so no worker dies.
//!
//! Every request has a deadline (`deadline_ms`, default 10 s): past it,
//! the request answers 504 and its task is cancelled, because dropping a
//! task's future cancels it. The same happens when a client hangs up
//! early (axum drops the handler): no helper keeps computing for no one.
//!
//! ```text
//! cargo run --release --example web_offload [-- --port 3000]
//! curl 'localhost:3000/simulate?a=0&b=63&games=100000'
//! curl 'localhost:3000/simulate?a=0&b=63&games=10000000&deadline_ms=200'   # 504, helper freed
//! curl localhost:3000/health
//! curl localhost:3000/helpers
//! ```
//!
//! Stops cleanly on Ctrl-C or SIGTERM: the pool stops its helpers.

#[path = "../../shared/basketball.rs"]
mod basketball;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shmkit::Pool;

/// The outcome of many games between two teams.
#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    a: usize,
    b: usize,
    games: u32,
    a_wins: u32,
    mean_margin: f64,
}

/// CPU work, run in a helper process.
fn simulate(a: usize, b: usize, games: u32) -> Summary {
    let margins: Vec<i16> = (0..games as u64).map(|g| basketball::play(a, b, g)).collect();
    let a_wins = margins.iter().filter(|&&m| m > 0).count() as u32;
    let mean_margin = margins.iter().map(|&m| m as f64).sum::<f64>() / games.max(1) as f64;
    Summary { a, b, games, a_wins, mean_margin }
}

fn tasks(r: &mut shmkit::Registry) {
    r.add(simulate);
}

#[derive(Deserialize)]
struct Matchup {
    a: usize,
    b: usize,
    games: u32,
    /// Give up (and cancel the task) after this many milliseconds.
    deadline_ms: Option<u64>,
}

async fn simulate_handler(
    State(pool): State<Arc<Pool>>,
    Query(q): Query<Matchup>,
) -> Result<Json<Summary>, (StatusCode, String)> {
    if q.a >= 64 || q.b >= 64 || q.games > 10_000_000 {
        return Err((StatusCode::BAD_REQUEST, "teams are 0..64, games at most 10 000 000".into()));
    }
    // The handle is a Future: awaiting it parks this request, not a thread.
    // Dropping it (the deadline passed, or the client hung up and axum
    // dropped this handler) cancels the task and frees its helper.
    let deadline = Duration::from_millis(q.deadline_ms.unwrap_or(10_000));
    let task = pool.submit(simulate, (q.a, q.b, q.games));
    match tokio::time::timeout(deadline, task).await {
        Ok(summary) => summary.map(Json).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(_) => Err((StatusCode::GATEWAY_TIMEOUT, format!("no answer within {deadline:?}; the task was cancelled"))),
    }
}

async fn helpers_handler(State(pool): State<Arc<Pool>>) -> Json<Vec<u32>> {
    Json(pool.helper_pids())
}

fn main() -> Result<()> {
    shmkit::init(tasks); // before any runtime or thread exists
    let port: u16 = match std::env::args().skip_while(|a| a != "--port").nth(1) {
        Some(p) => p.parse()?,
        None => 3000,
    };
    let pool = Arc::new(Pool::new(tasks)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(pool.clone(), port))?;
    drop(runtime);
    println!("server stopped; stopping {} helpers", pool.helpers());
    Ok(()) // the last Arc<Pool> drops here and stops the helpers
}

async fn serve(pool: Arc<Pool>, port: u16) -> Result<()> {
    let app = Router::new()
        .route("/simulate", get(simulate_handler))
        .route("/helpers", get(helpers_handler))
        .route("/health", get(|| async { "ok" }))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(stop_signal()).await?;
    Ok(())
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
}
