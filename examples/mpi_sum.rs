//! The global sum of a distributed array, checked against its closed form:
//! each rank fills and sums its own rows of its node's segment, then one
//! MPI allreduce adds the partial sums. Prints the setup time (allocate and
//! fill) and the time of one global sum.
//!
//! With `--baseline`, the same with every rank's rows in private memory.
//! With `--replicated-mib M`, also a read-only table of M MiB broadcast
//! to every rank, and the memory it takes per node: one copy per node in
//! a segment (shmkit), or one per rank (`--baseline`).
//!
//! ```text
//! cargo build --release --features mpi --example mpi_sum
//! OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
//!   mpirun -n 4 --oversubscribe -x SHMKIT_MPI_NODE_SIZE=2 target/release/examples/mpi_sum -- --elements 33554432
//! ```

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use ndarray::{ArrayD, IxDyn};
use shmkit::mpi::rsmpi::collective::SystemOperation;
use shmkit::mpi::rsmpi::traits::*;
use shmkit::mpi::{block, Cluster, DistArray, ReplicatedArray};

fn flag(name: &str, default: usize) -> Result<usize> {
    Ok(match std::env::args().skip_while(|a| a != name).nth(1) {
        Some(v) => v.parse().with_context(|| format!("{name} {v}"))?,
        None => default,
    })
}

/// Times the global sum is taken, for a steady figure.
const SUMS: u32 = 10;

fn main() -> Result<()> {
    let elements = flag("--elements", 1 << 25)?;
    let table_mib = flag("--replicated-mib", 0)?;
    let baseline = std::env::args().any(|a| a == "--baseline");
    let (_universe, cluster) = Cluster::init()?;
    let (ranks, nodes) = (cluster.world_size(), cluster.nodes());
    let mode = if baseline { "message passing" } else { "shmkit nodes" };
    // Whole numbers, summed exactly in u64 (an f64 total stops being exact
    // past 2^53, about 1.3e8 elements).
    let (sum, setup, per_sum) = match baseline {
        false => with_nodes(&cluster, elements)?,
        true => with_messages(&cluster, elements),
    };
    let n = elements as u128;
    let closed = n * n.saturating_sub(1) / 2;
    if cluster.world_rank() == 0 {
        println!("{elements} elements on {ranks} ranks, {nodes} nodes ({mode}): sum {sum}");
        println!("setup (allocate and fill) {setup:.4} s; global sum {per_sum:.5} s");
    }
    // Every rank has the total, so every rank checks it: all stop together.
    ensure!(sum as u128 == closed, "sum {sum} differs from the closed form {closed}");
    if cluster.world_rank() == 0 {
        println!("matches the closed form n(n-1)/2 = {closed}");
    }
    if table_mib > 0 {
        replicated(&cluster, table_mib << 20, baseline)?;
    }
    Ok(())
}

/// The array in node segments: each rank fills its rows in place, then a
/// local sum per rank and one allreduce. Returns the sum, the setup time
/// and the time of one global sum.
fn with_nodes(cluster: &Cluster, elements: usize) -> Result<(u64, f64, f64)> {
    let start = Instant::now();
    let mut a = DistArray::<u64>::create(cluster, "sum", &[elements], 0)?;
    let first = a.rank_rows().start as u64;
    let mut mine = cluster.agree(a.my_rows_mut())?;
    mine.iter_mut().enumerate().for_each(|(i, x)| *x = first + i as u64);
    drop(mine);
    let setup = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut sum = 0;
    for _ in 0..SUMS {
        // The rows are contiguous: sum them as a slice, as the baseline does.
        sum = a.reduce(|v| Some(v.as_slice().expect("C-order rows").iter().sum::<u64>()), |x, y| x + y)?.unwrap_or(0);
    }
    Ok((sum, setup, start.elapsed().as_secs_f64() / f64::from(SUMS)))
}

/// Plain message passing: each rank's rows in private memory.
fn with_messages(cluster: &Cluster, elements: usize) -> (u64, f64, f64) {
    let start = Instant::now();
    let rows = block(elements, cluster.world_size(), cluster.world_rank());
    let mine: Vec<u64> = rows.map(|i| i as u64).collect();
    let setup = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut total = 0u64;
    for _ in 0..SUMS {
        let local: u64 = mine.iter().sum();
        cluster.world().all_reduce_into(&local, &mut total, SystemOperation::sum());
    }
    (total, setup, start.elapsed().as_secs_f64() / f64::from(SUMS))
}

/// Broadcasts a table of `bytes` to every rank and reports the memory per
/// node: each rank's private memory, plus the node's segments once.
fn replicated(cluster: &Cluster, bytes: usize, baseline: bool) -> Result<()> {
    let len = bytes / 8;
    let before = rss_anon();
    let data = (cluster.world_rank() == 0).then(|| ArrayD::<f64>::from_shape_fn(IxDyn(&[len]), |i| i[0] as f64));
    let after_source = rss_anon();
    let (table, private);
    if baseline {
        let mut mine = vec![0.0f64; len];
        if let Some(d) = &data {
            mine.copy_from_slice(d.as_slice().expect("contiguous"));
        }
        for chunk in mine.chunks_mut(1 << 28) {
            cluster.world().process_at_rank(0).broadcast_into(chunk);
        }
        table = None;
        private = mine;
    } else {
        table = Some(ReplicatedArray::<f64>::broadcast(cluster, "table", &[len], data.as_ref().map(|d| d.view()))?);
        private = Vec::new();
    }
    let check = match &table {
        Some(t) => cluster.agree(t.view().map(|v| v[[len - 1]]))?,
        None => private[len - 1],
    };
    // Checked on every rank together: a rank that returned alone would
    // leave the others waiting in the next collective call.
    let mut wrong = 0u8;
    cluster.world().all_reduce_into(&u8::from(check != (len - 1) as f64), &mut wrong, SystemOperation::max());
    ensure!(wrong == 0, "the table arrived wrong on some rank");
    // Private memory this rank gained, not counting rank 0's source copy.
    let mine = rss_anon().saturating_sub(before).saturating_sub(after_source.saturating_sub(before));
    let shared = if cluster.is_leader() && table.is_some() { bytes as u64 } else { 0 };
    let mut node_total = 0u64;
    cluster.node().all_reduce_into(&(mine + shared), &mut node_total, SystemOperation::sum());
    if cluster.world_rank() == 0 {
        let mode = if baseline { "message passing" } else { "shmkit nodes" };
        println!(
            "replicated {} MiB table ({mode}): {:.0} MiB per node ({} ranks per node)",
            bytes >> 20,
            node_total as f64 / (1 << 20) as f64,
            cluster.node_size()
        );
    }
    drop(private);
    Ok(())
}

/// This process's private resident memory in bytes (`RssAnon`).
fn rss_anon() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("RssAnon:"));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).unwrap_or(0) * 1024
}
