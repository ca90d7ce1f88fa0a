//! `heat_diffusion` across MPI nodes: the plate's rows are spread over
//! nodes, each node keeps its rows (plus one halo row on each side) once in
//! a shared segment that all its ranks compute on, and only node leaders
//! exchange edge rows with the nodes above and below. The last line is the
//! same `checksum` `heat_diffusion` prints for the same size and steps.
//!
//! With `--views`, the same through views and `exchange_halos` per step
//! (what a sweep saves, measured by the MPI bench).
//!
//! With `--baseline`, the same stencil as plain message passing: every rank
//! keeps private rows and exchanges halo rows with its neighbour ranks,
//! inside a node too (what the comparison in the README measures).
//!
//! ```text
//! cargo build --release --features mpi --example mpi_heat
//! OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
//!   mpirun -n 4 --oversubscribe -x SHMKIT_MPI_NODE_SIZE=2 target/release/examples/mpi_heat -- --size 512 --steps 4000
//! ```

#[path = "shared/heat.rs"]
mod heat;

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use shmkit::mpi::rsmpi::point_to_point as p2p;
use shmkit::mpi::rsmpi::topology::SimpleCommunicator;
use shmkit::mpi::rsmpi::traits::*;
use shmkit::mpi::{block, Cluster, DistArray, Step};

fn flag(name: &str, default: usize) -> Result<usize> {
    Ok(match std::env::args().skip_while(|a| a != name).nth(1) {
        Some(v) => v.parse().with_context(|| format!("{name} {v}"))?,
        None => default,
    })
}

fn main() -> Result<()> {
    let (n, steps) = (flag("--size", 512)?, flag("--steps", 4000)?);
    let baseline = std::env::args().any(|a| a == "--baseline");
    let views = std::env::args().any(|a| a == "--views");
    let (_universe, cluster) = Cluster::init()?;
    // Checked on every rank alike, before any collective call.
    ensure!(n >= cluster.world_size().max(3), "--size {n}: need at least one row per rank, and 3 rows");
    let start = Instant::now();
    let (sum, stepping) = match (baseline, views) {
        (true, _) => with_messages(&cluster, n, steps),
        (false, true) => with_views(&cluster, n, steps)?,
        (false, false) => with_nodes(&cluster, n, steps)?,
    };
    let secs = start.elapsed().as_secs_f64();
    if let Some(sum) = sum {
        let mode = match (baseline, views) {
            (true, _) => "message passing",
            (false, true) => "shmkit nodes, views and exchange_halos",
            (false, false) => "shmkit nodes",
        };
        println!(
            "{n}x{n} plate, {steps} steps, {} ranks on {} nodes ({mode}): time {secs:.3} s, of which steps {stepping:.3} s",
            cluster.world_size(),
            cluster.nodes()
        );
        println!("checksum {sum}");
    }
    Ok(())
}

/// Ends the whole job if this rank hit an error: returning alone would
/// leave the other ranks waiting in the next collective call for good.
/// (`Cluster::agree` is the alternative, at one collective per check.)
fn or_abort<T>(cluster: &Cluster, r: shmkit::Result<T>) -> T {
    r.unwrap_or_else(|e| {
        eprintln!("rank {}: {e}", cluster.world_rank());
        cluster.world().abort(2)
    })
}

/// Node segments with halos; ranks compute their rows in place. A sweep
/// claims each rank's rows once: a step is the stencil, the edge rows
/// crossing to the neighbouring nodes, and one node barrier. With the
/// checksum, the seconds from the filled grid to the last step (setup and
/// the gather left out).
fn with_nodes(cluster: &Cluster, n: usize, steps: usize) -> Result<(Option<f64>, f64)> {
    let mut a = DistArray::<f64>::create(cluster, "heat-a", &[n, n], 1)?;
    let mut b = DistArray::<f64>::create(cluster, "heat-b", &[n, n], 1)?;
    fill_initial(cluster, &mut a);
    let start = Instant::now();
    let mut sweep = a.sweep(&mut b)?;
    for _ in 0..steps {
        sweep.step(|Step { current, mut next, rows, at }| {
            // Both are C-order blocks of whole rows: plain slices, as the
            // message-passing version's rows are.
            let next = next.as_slice_mut().expect("C-order rows");
            step_rows(n, rows, at, current.as_slice().expect("a C-order block"), next);
        });
    }
    let done = sweep.finish();
    let stepping = start.elapsed().as_secs_f64();
    Ok((checksum(done)?, stepping))
}

/// The same through views and `exchange_halos`, as before `Sweep` (with
/// `--views`, for the comparison in the MPI bench): each step takes a
/// view of the current node block and of this rank's next rows (a claim
/// each), and the exchange meets at a node barrier, lets the leaders swap,
/// and agrees in a world allreduce.
fn with_views(cluster: &Cluster, n: usize, steps: usize) -> Result<(Option<f64>, f64)> {
    let mut grids =
        [DistArray::<f64>::create(cluster, "heat-a", &[n, n], 1)?, DistArray::create(cluster, "heat-b", &[n, n], 1)?];
    fill_initial(cluster, &mut grids[0]);
    let start = Instant::now();
    grids[0].exchange_halos()?;
    for k in 0..steps {
        let (a, b) = grids.split_at_mut(1);
        let (cur, next) = if k % 2 == 0 { (&a[0], &mut b[0]) } else { (&b[0], &mut a[0]) };
        {
            let rows = next.rank_rows();
            let at = cur.local_row(rows.start).expect("a row of this node");
            let node = or_abort(cluster, cur.node_view());
            let mut out = or_abort(cluster, next.my_rows_mut());
            let out = out.as_slice_mut().expect("C-order rows");
            step_rows(n, rows, at, node.as_slice().expect("a C-order block"), out);
        }
        next.exchange_halos()?;
    }
    let stepping = start.elapsed().as_secs_f64();
    Ok((checksum(&grids[steps % 2])?, stepping))
}

/// Fills this rank's rows with the plate's starting values.
fn fill_initial(cluster: &Cluster, grid: &mut DistArray<'_, f64>) {
    let first = grid.rank_rows().start;
    for (k, mut row) in or_abort(cluster, grid.my_rows_mut()).outer_iter_mut().enumerate() {
        row.fill(heat::initial(first + k));
    }
}

/// One step for global rows `rows`, written to `next` (their rows, in
/// order), from `cur`, a node block of `n`-element rows whose row `at`
/// holds global row `rows.start`.
fn step_rows(n: usize, rows: std::ops::Range<usize>, at: usize, cur: &[f64], next: &mut [f64]) {
    let row = |r: usize| &cur[r * n..(r + 1) * n];
    let last = cur.len() / n - 1;
    for ((g, l), o) in rows.zip(at..).zip(next.chunks_exact_mut(n)) {
        let (up, down) = (l.saturating_sub(1), (l + 1).min(last));
        heat::step_row(g, n, row(up), row(l), row(down), o);
    }
}

/// The whole plate's checksum, on world rank 0 (`None` elsewhere).
fn checksum(grid: &DistArray<'_, f64>) -> Result<Option<f64>> {
    let grid = grid.gather()?;
    Ok(grid.map(|g| heat::checksum(g.outer_iter().map(|r| r.to_slice().expect("C-order rows")))))
}

/// Plain message passing: private rows plus halos per rank, neighbour
/// ranks swap edge rows every step, whether or not they share a node.
fn with_messages(cluster: &Cluster, n: usize, steps: usize) -> (Option<f64>, f64) {
    let world = cluster.world();
    let (me, size) = (world.rank() as usize, world.size() as usize);
    let rows = block(n, size, me);
    let h = rows.len() + 2;
    let init = |g: usize| vec![heat::initial(g); n];
    let mut cur: Vec<Vec<f64>> =
        (0..h).map(|l| if l == 0 || l == h - 1 { vec![0.0; n] } else { init(rows.start + l - 1) }).collect();
    let mut next = cur.clone();
    let start = Instant::now();
    for k in 0..=steps {
        // Halos of `cur`: my edge rows go to my neighbours, in two rounds
        // (even ranks swap downwards first, odd ones upwards), so that the
        // swaps of a step run in parallel, not as a chain through the ranks.
        for round in 0..2 {
            let downwards = (me + round) % 2 == 0;
            if downwards && me + 1 < size {
                cur[h - 1] = swap(world, me + 1, &cur[h - 2]);
            } else if !downwards && me > 0 {
                cur[0] = swap(world, me - 1, &cur[1]);
            }
        }
        if k == steps {
            break;
        }
        for (l, g) in (1..h - 1).zip(rows.clone()) {
            heat::step_row(g, n, &cur[l - 1], &cur[l], &cur[l + 1], &mut next[l]);
        }
        std::mem::swap(&mut cur, &mut next);
    }
    let stepping = start.elapsed().as_secs_f64();
    let mine: Vec<f64> = cur[1..h - 1].concat();
    let root = world.process_at_rank(0);
    if me == 0 {
        let mut all = vec![0.0; n * n];
        let counts: Vec<i32> = (0..size).map(|r| (block(n, size, r).len() * n) as i32).collect();
        let displs: Vec<i32> = (0..size).map(|r| (block(n, size, r).start * n) as i32).collect();
        let mut part = shmkit::mpi::rsmpi::datatype::PartitionMut::new(&mut all[..], counts, displs);
        root.gather_varcount_into_root(&mine[..], &mut part);
        (Some(heat::checksum(all.chunks(n))), stepping)
    } else {
        root.gather_varcount_into(&mine[..]);
        (None, stepping)
    }
}

/// Sends `row` to rank `with` and returns the row it sends back.
fn swap(world: &SimpleCommunicator, with: usize, row: &[f64]) -> Vec<f64> {
    let peer = world.process_at_rank(with as i32);
    let mut recv = vec![0.0; row.len()];
    p2p::send_receive_into(row, &peer, &mut recv[..], &peer);
    recv
}
