//! Heat spreading over a 2-D plate: a stencil over a shared,
//! double-buffered grid, computed by helpers that each own a band of rows
//! and step in lockstep through a shared barrier.
//!
//! Each step reads one grid and writes the other; the barrier makes every
//! helper finish step k before any starts step k + 1, so a band's
//! neighbours' rows are never read half-written. The result is checked
//! bit for bit against the same computation in this process.
//!
//! ```text
//! cargo run --release --example heat_diffusion [-- --size N --steps S]
//! ```

use std::time::{Duration, Instant};

#[path = "shared/heat.rs"]
mod heat;

use anyhow::{ensure, Result};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Ix2};
use shmkit::sync::ShmBarrier;
use shmkit::{Pool, SharedArray};

/// One explicit step of the heat equation for rows `lo..` of `next`
/// (the shared kernel, row by row).
fn step(cur: ArrayView2<f64>, mut next: ArrayViewMut2<f64>, lo: usize) {
    let n = cur.nrows();
    for (k, mut row) in next.outer_iter_mut().enumerate() {
        let i = lo + k;
        let at = |r: usize| cur.row(r.min(n - 1)).to_slice().expect("C-order rows");
        let (up, mid, down) = (at(i.saturating_sub(1)), at(i), at(i + 1));
        heat::step_row(i, n, up, mid, down, row.as_slice_mut().expect("C-order rows"));
    }
}

/// A helper's whole job: its band of rows, every step, in lockstep.
fn band(grids: (String, String), barrier: String, rows: (usize, usize), steps: u32) -> anyhow::Result<()> {
    let mut g = [SharedArray::<f64, Ix2>::open(&grids.0)?, SharedArray::<f64, Ix2>::open(&grids.1)?];
    let barrier = ShmBarrier::open(&barrier)?;
    for k in 0..steps as usize {
        let (a, b) = g.split_at_mut(1);
        let (cur, next) = if k % 2 == 0 { (&a[0], &mut b[0]) } else { (&b[0], &mut a[0]) };
        step(cur.view()?.view(), next.rows_mut(rows.0..rows.1)?.view_mut(), rows.0);
        // A helper that died would leave the others waiting: give up instead.
        barrier.wait_timeout(Duration::from_secs(60))?;
    }
    Ok(())
}

fn tasks(r: &mut shmkit::Registry) {
    r.add(band);
}

fn flag(name: &str, default: usize) -> Result<usize> {
    Ok(match std::env::args().skip_while(|a| a != name).nth(1) {
        Some(v) => v.parse()?,
        None => default,
    })
}

fn main() -> Result<()> {
    shmkit::init(tasks);
    let (n, steps) = (flag("--size", 512)?, flag("--steps", 4000)? as u32);
    let pool = Pool::new(tasks)?;
    let helpers = pool.helpers();
    let start_grid = Array2::<f64>::from_shape_fn((n, n), |(i, _)| heat::initial(i));
    let grids = [
        SharedArray::create_from(&format!("heat-a-{}", std::process::id()), &start_grid)?,
        SharedArray::create_from(&format!("heat-b-{}", std::process::id()), &start_grid)?,
    ];
    let barrier = ShmBarrier::create_unique(helpers as u32)?;
    let names = (grids[0].name().to_owned(), grids[1].name().to_owned());

    let t = Instant::now();
    let share = n.div_ceil(helpers);
    let jobs: Vec<_> = (0..helpers)
        .map(|h| {
            pool.submit(band, (names.clone(), barrier.name().to_owned(), (h * share, ((h + 1) * share).min(n)), steps))
        })
        .collect();
    for job in jobs {
        job.wait()?;
    }
    let secs = t.elapsed().as_secs_f64();
    let result = &grids[steps as usize % 2];
    let cells = (n * n) as f64 * steps as f64;
    println!(
        "{n}x{n} plate, {steps} steps on {helpers} helpers: {secs:.2} s ({:.0} M cell-updates/s)",
        cells / secs / 1e6
    );

    let t = Instant::now();
    let mut reference = [start_grid.clone(), start_grid];
    for k in 0..steps as usize {
        let (a, b) = reference.split_at_mut(1);
        let (cur, next) = if k % 2 == 0 { (&a[0], &mut b[0]) } else { (&b[0], &mut a[0]) };
        step(cur.view(), next.view_mut(), 0);
    }
    println!("same steps in this process, one thread: {:.2} s", t.elapsed().as_secs_f64());
    ensure!(*result.view()? == reference[steps as usize % 2], "helpers' grid differs from the reference");
    println!("verified: identical to the single-process result, bit for bit\n");
    draw(result.view()?.view());
    // The last line, computed as `mpi_heat` computes it: the same grid
    // size and steps print the same checksum there.
    println!("checksum {}", heat::checksum(result.view()?.outer_iter().map(|r| r.to_slice().expect("C-order rows"))));
    Ok(())
}

/// A coarse picture of the top quarter of the plate, where the heat has
/// spread from the hot edge: hotter is denser.
fn draw(grid: ArrayView2<f64>) {
    let (n, m) = (grid.nrows() / 4, grid.ncols());
    println!("  top quarter of the plate (hot edge at the top):");
    let shades = [' ', '.', ':', '-', '=', '+', '*', '#', '%', '@'];
    for r in 0..12 {
        let line: String = (0..48)
            .map(|c| {
                let v = grid[(r * (n - 1) / 11, c * (m - 1) / 47)];
                shades[((v / 100.0).powf(0.4) * 9.0).round().clamp(0.0, 9.0) as usize]
            })
            .collect();
        println!("  |{line}|");
    }
}
