//! Producer → queue → consumers, Python's poison-pill pattern done right.
//!
//! The coordinator sends work records into a shared queue; consumer tasks
//! in helper processes receive them until the stream ends (the sender is
//! dropped and the queue drained: no poison pills to count), and write
//! each result into a shared array at the record's index. Every index is
//! checked to be written once.
//!
//! ```text
//! cargo run --release --example pipeline [-- --items N]
//! ```

use std::time::Instant;

use anyhow::{ensure, Result};
use ndarray::Ix1;
use shmkit::sync::{ShmCounter, ShmQueue};
use shmkit::{Pool, SharedArray};

shmkit::record! {
    /// One unit of work, as it travels through the queue (numpy dtype
    /// `[('index', '<u8'), ('x', '<f8')]`).
    struct Work {
        index: u64,
        x: f64,
    }
}

/// Stand-in for real per-record work: a few hundred flops.
fn process(x: f64) -> f64 {
    (0..200).fold(x, |acc, k| (acc * 1.000_001 + k as f64).sqrt())
}

/// A consumer: runs in a helper until the stream ends and is drained.
fn consume(queue: String, results: String, processed: String) -> anyhow::Result<u64> {
    let queue = ShmQueue::<Work>::open(&queue)?.receiver()?;
    let out = SharedArray::<f64, Ix1>::open(&results)?;
    let processed = ShmCounter::open(&processed)?;
    // Every consumer writes into the same array, so no one can claim it
    // for a mutable view (shmkit would refuse the second: Error::Busy).
    // SAFETY: each index arrives in exactly one record, and the queue hands
    // each record to exactly one consumer, so no element is written twice
    // or read while written; the coordinator reads only after the pool
    // has returned every consumer's result.
    let mut out = unsafe { out.view_mut_unchecked() };
    let mut done = 0;
    for w in queue.iter() {
        out[w.index as usize] = process(w.x);
        processed.add(1);
        done += 1;
    }
    Ok(done) // RecvError::Disconnected: every sender gone, the queue drained
}

fn tasks(r: &mut shmkit::Registry) {
    r.add(consume);
}

fn main() -> Result<()> {
    shmkit::init(tasks);
    let items: u64 = match std::env::args().skip_while(|a| a != "--items").nth(1) {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let pool = Pool::new(tasks)?;
    let queue = ShmQueue::<Work>::create_unique(4096)?;
    let sender = queue.sender()?; // before the consumers start: they wait for it, not end
    let mut results = SharedArray::<f64, Ix1>::create_unique(items as usize)?;
    results.as_slice_mut()?.fill(f64::NAN);
    let processed = ShmCounter::create_unique(0)?;
    let start = Instant::now();
    let consumers: Vec<_> = (0..pool.helpers())
        .map(|_| pool.submit(consume, (queue.name().into(), results.name().into(), processed.name().into())))
        .collect();
    for index in 0..items {
        sender.send(Work { index, x: index as f64 }).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    drop(sender); // the stream's end: consumers finish what is queued, then stop
    let per_consumer: Vec<u64> = consumers.into_iter().map(|h| h.wait()).collect::<Result<_, _>>()?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{items} records through the queue to {} consumers in {secs:.2} s ({:.0} records/s)",
        per_consumer.len(),
        items as f64 / secs
    );
    println!("per consumer: {per_consumer:?}");
    ensure!(per_consumer.iter().sum::<u64>() == items && processed.get() == items, "records lost or duplicated");
    let results = results.as_slice()?;
    let wrong = (0..items as usize).filter(|&i| results[i] != process(i as f64)).count();
    ensure!(wrong == 0, "{wrong} results missing or wrong");
    println!("verified: every record processed exactly once, results in place");
    Ok(())
}
