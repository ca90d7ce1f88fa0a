//! A March Madness Monte Carlo simulation (a classic Python
//! multiprocessing example), across helper processes.
//!
//! Every first-round matchup of a 64-team bracket is played thousands of
//! times, possession by possession. Helpers write each game's margin into
//! a shared `(matchups, games)` array, in place, with a progress bar here;
//! the coordinator then summarises win chances and draws a histogram.
//!
//! ```text
//! cargo run --release --example monte_carlo [-- --games N]
//! ```

#[path = "shared/basketball.rs"]
mod basketball;

use std::time::Instant;

use anyhow::{ensure, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{ArrayViewMut2, Axis, Ix2};
use shmkit::{Pool, SharedArray};

const MATCHUPS: usize = 32;

/// Plays every game of matchups `first..` for the rows it is given.
fn simulate(first: usize, mut rows: ArrayViewMut2<i16>) {
    for (k, mut games) in rows.axis_iter_mut(Axis(0)).enumerate() {
        let (a, b) = basketball::matchup(first + k);
        games.iter_mut().enumerate().for_each(|(g, m)| *m = basketball::play(a, b, g as u64));
    }
}

fn tasks(r: &mut shmkit::Registry) {
    r.add(simulate);
}

fn main() -> Result<()> {
    shmkit::init(tasks);
    let games: usize = match std::env::args().skip_while(|a| a != "--games").nth(1) {
        Some(n) => n.parse()?,
        None => 20_000,
    };
    let pool = Pool::new(tasks)?;
    let mut margins = SharedArray::<i16, Ix2>::create_unique((MATCHUPS, games))?;
    println!("{MATCHUPS} matchups x {games} games on {} helpers, margins in '{}'", pool.helpers(), margins.name());

    let bar = ProgressBar::new(MATCHUPS as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} matchups {elapsed}")?);
    let start = Instant::now();
    pool.batch()
        .chunksize(1)
        .progress(|done, _| bar.set_position(done as u64))
        .for_each_chunk_mut(&mut margins, simulate)?;
    bar.finish();
    let secs = start.elapsed().as_secs_f64();
    println!("{} games in {secs:.2} s ({:.0} games/s)", MATCHUPS * games, (MATCHUPS * games) as f64 / secs);

    let (a, b) = basketball::matchup(7);
    let row = margins.view()?.row(7).to_vec();
    ensure!(row.iter().enumerate().all(|(g, &m)| m == basketball::play(a, b, g as u64)), "helper results differ");
    summarise(&margins)
}

fn summarise(margins: &SharedArray<i16, Ix2>) -> Result<()> {
    let view = margins.view()?;
    println!("\nteam  vs team   P(win)   mean margin");
    for (m, row) in view.axis_iter(Axis(0)).enumerate().step_by(4) {
        let (a, b) = basketball::matchup(m);
        let wins = row.iter().filter(|&&x| x > 0).count() as f64 / row.len() as f64;
        let mean = row.iter().map(|&x| x as f64).sum::<f64>() / row.len() as f64;
        println!("{:>4}  vs {:>4}   {:>5.1}%   {mean:>+6.1}", a + 1, b + 1, 100.0 * wins);
    }
    let closest = view.axis_iter(Axis(0)).map(|r| r.iter().map(|&x| x as f64).sum::<f64>().abs()).enumerate();
    let (m, _) = closest.min_by(|x, y| x.1.total_cmp(&y.1)).expect("matchups");
    let (a, b) = basketball::matchup(m);
    println!("\nmargin histogram, closest matchup ({} vs {}):", a + 1, b + 1);
    let mut bins = [0usize; 16];
    for &x in view.row(m) {
        bins[((x as i32 + 40).clamp(0, 79) / 5) as usize] += 1;
    }
    let most = *bins.iter().max().unwrap_or(&1);
    for (i, &n) in bins.iter().enumerate() {
        println!("{:>+4}..{:>+4} {}", i as i32 * 5 - 40, i as i32 * 5 - 36, "#".repeat(50 * n / most.max(1)));
    }
    Ok(())
}
