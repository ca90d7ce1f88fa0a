//! Python's classic `Manager` program ("Using Manager for Shared Objects"): pool
//! workers write `key → 2 * key` into a shared dict and append
//! `"processed_{key}"` to a shared list; the parent prints and checks both.
//! Python runs a server process for this and pickles every operation over
//! a socket; here the dict and the list are segments the workers write
//! directly, and a worker killed mid-write never corrupts them.
//!
//! Then the same at scale: `--keys N` (default 1,000,000) set + append
//! operations spread over the helpers, timed.
//!
//! ```text
//! cargo run --release --example manager -- --keys 1000000
//! ```

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use shmkit::collections::{FixedStr, ShmMap, ShmVec};
use shmkit::Pool;

/// The list's strings: up to 22 bytes each, stored in place.
type Text = FixedStr<24>;

/// The Python program's worker: `shared_dict[key] = value`, then
/// `shared_list.append(f"processed_{key}")`. The dict and list travel by
/// name; opening one maps it (helpers could keep them open, see below).
fn worker((dict, list, key, value): (String, String, u64, u64)) -> Result<u64> {
    let (d, l) = (ShmMap::<u64, u64>::open(&dict)?, ShmVec::<Text>::open(&list)?);
    d.insert(key, value)?;
    l.push(Text::format(format_args!("processed_{key}"))?)?;
    Ok(key)
}

/// The same for keys `lo..hi`, opening the dict and list once.
fn worker_range((dict, list, lo, hi): (String, String, u64, u64)) -> Result<u64> {
    let (d, l) = (ShmMap::<u64, u64>::open(&dict)?, ShmVec::<Text>::open(&list)?);
    for key in lo..hi {
        d.insert(key, 2 * key)?;
        l.push(Text::format(format_args!("processed_{key}"))?)?;
    }
    Ok(hi - lo)
}

fn tasks(r: &mut shmkit::Registry) {
    r.add(worker).add(worker_range);
}

fn main() -> Result<()> {
    shmkit::init(tasks);
    let keys: u64 = match std::env::args().skip_while(|a| a != "--keys").nth(1) {
        Some(v) => v.parse().with_context(|| format!("--keys {v}"))?,
        None => 1_000_000,
    };
    let pool = Pool::builder().tasks(tasks).helpers(4).build()?;
    ten_items(&pool)?;
    at_scale(&pool, keys)
}

/// The Python program's ten items, one task each.
fn ten_items(pool: &Pool) -> Result<()> {
    let dict = ShmMap::<u64, u64>::create_unique(100)?;
    let list = ShmVec::<Text>::create_unique(100)?;
    let names = (dict.name().to_owned(), list.name().to_owned());
    let handles: Vec<_> = (0..10).map(|i| pool.submit(worker, (names.0.clone(), names.1.clone(), i, i * 2))).collect();
    for h in handles {
        h.wait()?;
    }
    let mut entries = dict.snapshot()?;
    entries.sort_unstable();
    let shown: Vec<String> = entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("Dict: {{{}}}", shown.join(", "));
    let items: Vec<String> = list.iter().map(|s| format!("'{s}'")).collect(); // in the order they were appended
    println!("List: [{}]", items.join(", "));
    ensure!(entries == (0..10).map(|i| (i, 2 * i)).collect::<Vec<_>>(), "the dict is wrong");
    let mut sorted: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    sorted.sort_unstable_by_key(|s| s["processed_".len()..].parse::<u64>().unwrap_or(u64::MAX));
    ensure!(sorted == (0..10).map(|i| format!("processed_{i}")).collect::<Vec<_>>(), "the list is wrong");
    Ok(())
}

/// `keys` set + append operations, one chunk of keys per helper.
fn at_scale(pool: &Pool, keys: u64) -> Result<()> {
    let dict = ShmMap::<u64, u64>::create_unique(keys as usize)?;
    let list = ShmVec::<Text>::create_unique(keys as usize)?;
    let helpers = pool.helper_pids().len() as u64;
    let chunks: Vec<_> = (0..helpers)
        .map(|h| (dict.name().to_owned(), list.name().to_owned(), keys * h / helpers, keys * (h + 1) / helpers))
        .collect();
    let start = Instant::now();
    let done: u64 = pool.map(worker_range, chunks).into_iter().collect::<Result<Vec<_>, _>>()?.iter().sum();
    let secs = start.elapsed().as_secs_f64();
    ensure!(done == keys && dict.len() == keys as usize && list.len() == keys as usize, "entries are missing");
    let sample = keys / 2;
    ensure!(dict.get(&sample)? == Some(2 * sample), "key {sample} has the wrong value");
    println!(
        "{keys} keys by {helpers} helpers: {} set + append operations in {secs:.3} s ({:.1} M ops/s)",
        2 * keys,
        2.0 * keys as f64 / secs / 1e6
    );
    Ok(())
}
