//! The heat-diffusion stencil, shared by `heat_diffusion` (helpers on one
//! machine) and `mpi_heat` (ranks across nodes), so that both compute the
//! same numbers in the same order and print the same checksum.
#![allow(dead_code)] // each example uses part of it

/// Diffusion coefficient of the explicit step.
pub const ALPHA: f64 = 0.2;

/// Temperature of the hot top edge.
pub const HOT: f64 = 100.0;

/// Starting value of cell (row `i`, any column): the hot top edge, and
/// below it a ramp that repeats every ten rows, so that every row matters
/// from the first step (a wrong halo row anywhere changes the checksum).
pub fn initial(i: usize) -> f64 {
    if i == 0 {
        HOT
    } else {
        (i % 10) as f64
    }
}

/// One explicit step for one row `i` of an `n`-row plate, from the rows
/// above (`up`), at (`mid`) and below (`down`) in the current grid. The
/// border stays as it is: edge rows and edge columns are copied.
pub fn step_row(i: usize, n: usize, up: &[f64], mid: &[f64], down: &[f64], out: &mut [f64]) {
    let m = mid.len();
    if i == 0 || i == n - 1 {
        out.copy_from_slice(mid);
        return;
    }
    out[0] = mid[0];
    out[m - 1] = mid[m - 1];
    for j in 1..m - 1 {
        let c = mid[j];
        let lap = up[j] + down[j] + mid[j - 1] + mid[j + 1] - 4.0 * c;
        out[j] = c + ALPHA * lap;
    }
}

/// The checksum both examples print last: the sum of every cell, row by
/// row, left to right.
pub fn checksum<'a>(rows: impl Iterator<Item = &'a [f64]>) -> f64 {
    rows.map(|r| r.iter().sum::<f64>()).sum()
}
