//! An array pass's first round, by claiming: one job per helper, each
//! taking chunk after chunk from a claim table (see `transport::claims`)
//! until none is left, with no message and no driver in between.
//!
//! A chunk costs a message per chunk otherwise, and each message waits for
//! its helper's driver thread to run: on a busy machine that wait is what
//! made passes slower than threads. After the round, the table says what
//! became of each chunk (`Round`); `rows` runs what is left the old way.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use crate::pool::call::batch::{failed_in_task, next, Batch, FinishOnUnwind};
use crate::pool::coordinator::cancel::Cancel;
use crate::pool::coordinator::job::{Delivery, Reply};
use crate::pool::coordinator::shared::Shared;
use crate::pool::error::{Failed, Outcome, TaskError};
use crate::pool::helper::claim::chunk_items;
use crate::pool::helper::registry::Task;
use crate::pool::transport::claims::{State, Table, CHUNKS, TABLES};
use crate::pool::transport::codec;
use crate::pool::transport::wire::ClaimRef;

/// A progress callback: `(chunks done, chunks)`.
pub(super) type Progress<'p> = Option<Box<dyn FnMut(usize, usize) + 'p>>;

/// How often a pass waiting for its claimers shows progress (from its
/// table) and withdraws claim jobs no longer needed.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// What became of one chunk in the claiming round.
pub(super) enum Round<R> {
    /// It ran (or began): its result, or how it failed.
    Ran(Result<R, Failed>),
    /// It ran to the end, but its helper died before answering: the
    /// result is lost (the rows are written, for a pass that writes).
    Lost,
    /// Never begun: run it another way.
    Left,
}

/// A claim table held by one pass; closed (see `claims`) and given back
/// when dropped, also when the pass unwinds: no entry is left free for a
/// claimer of this pass once another pass may use the table.
struct Lease<'a> {
    shared: &'a Shared,
    index: usize,
    /// The pass and its chunks, once the table is reset for it.
    pass: Option<(u32, usize)>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let (Some((pass, count)), Some(table)) = (self.pass, self.shared.region.claims(self.index)) {
            table.close(pass, count);
        }
        self.shared.tables_taken.fetch_and(!(1 << self.index), Ordering::AcqRel);
    }
}

/// A free claim table, if any.
fn lease(shared: &Shared) -> Option<Lease<'_>> {
    let mut taken = shared.tables_taken.load(Ordering::Acquire);
    loop {
        let index = (0..TABLES).find(|i| taken & (1 << i) == 0)?;
        let ask =
            shared.tables_taken.compare_exchange_weak(taken, taken | 1 << index, Ordering::AcqRel, Ordering::Acquire);
        match ask {
            Ok(_) => return Some(Lease { shared, index, pass: None }),
            Err(now) => taken = now,
        }
    }
}

impl<'p> Batch<'p> {
    /// Runs the chunks `ranges` of a pass by claiming, `template` being
    /// the task's arguments for any chunk (its rows are replaced); returns
    /// once every job of the round has answered. `None`, with nothing
    /// sent, where claiming does not apply: a timeout is set (it is per
    /// chunk), fewer than two chunks, more than a table holds, or every
    /// table is in use.
    pub(super) fn claim_round<M, F: Task<M>>(
        &self,
        ranges: &[Range<usize>],
        template: &F::Args,
        progress: &mut Progress<'p>,
    ) -> Option<Vec<Round<F::Output>>> {
        let inner = &self.pool.inner;
        let timeout = self.timeout.unwrap_or(inner.config.timeout);
        if timeout.is_some() || ranges.len() < 2 || ranges.len() > CHUNKS {
            return None;
        }
        let task = self.task_id::<F>().ok()?;
        let mut args = Vec::new();
        codec::put(&mut args, template).ok()?; // `Serialize` before anything is queued
        let mut lease = lease(inner)?;
        let table = inner.region.claims(lease.index).expect("leases are of tables in the segment");
        let pass = inner.passes.fetch_add(1, Ordering::Relaxed).wrapping_add(1).max(1);
        table.reset(pass, ranges);
        lease.pass = Some((pass, ranges.len()));
        let claimers = self.pool.helpers().min(ranges.len());
        let (tx, rx) = channel();
        let cancel = Arc::new(Cancel::default());
        let jobs = (0..claimers).map(|k| {
            let mut job = self.job(task, args.clone(), 1, Reply::Channel { first: k, tx: tx.clone() }, &cancel);
            let chunks = ranges.len() as u32;
            job.claim = Some(ClaimRef { table: lease.index as u32, pass, chunks, claimer: k as u16 });
            job.retries = 0; // what a dead claimer began is settled from the table
            job
        });
        inner.push(jobs.collect());
        drop(tx);
        let answers = self.await_claims(&rx, &cancel, claimers, (table, pass, ranges.len()), progress);
        table.close(pass, ranges.len()); // what it says now is final
        Some(settle(answers, table, pass, ranges.len()))
    }

    /// Waits for each of `claimers` jobs to answer. The first to answer
    /// found no chunk left: claim jobs still queued are withdrawn then,
    /// and again while any is outstanding (one requeued after its helper
    /// died unstarted), since a helper busy with other work would take
    /// them only to say so. Progress is shown as chunks finish.
    fn await_claims(
        &self,
        rx: &Receiver<Delivery>,
        cancel: &Arc<Cancel>,
        claimers: usize,
        (table, pass, chunks): (Table<'_>, u32, usize),
        progress: &mut Progress<'p>,
    ) -> Vec<Option<Outcome>> {
        let _unwind = FinishOnUnwind(self.pool, cancel, rx);
        let mut answers: Vec<Option<Outcome>> = (0..claimers).map(|_| None).collect();
        let (mut got, mut withdrawn) = (0, false);
        let done = || (0..chunks).filter(|&i| matches!(table.state(i, pass), State::Done(_))).count();
        while got < claimers {
            let delivery = match (progress.as_mut(), withdrawn) {
                (None, false) => next(rx),
                (p, _) => match rx.recv_timeout(LOOK_EVERY) {
                    Ok(d) => Some(d),
                    Err(RecvTimeoutError::Timeout) => {
                        if withdrawn {
                            self.pool.inner.drop_cancelled(cancel);
                        }
                        if let Some(p) = p {
                            p(done(), chunks);
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            let Some((k, _, outcome)) = delivery else { break }; // every job answers, even when dropped
            if outcome.is_ok() && !withdrawn {
                self.pool.inner.drop_cancelled(cancel); // fails queued ones, not started: nothing lost
                withdrawn = true;
            }
            if let Some(place) = answers.get_mut(k) {
                *place = Some(outcome);
                got += 1;
            }
        }
        answers
    }
}

/// What became of each of a pass's `chunks`, from the closed table and
/// the claim jobs' answers: each claimer's results, in claim order, go to
/// the chunks the table says it ran (done or failed), in row order.
fn settle<R: serde::de::DeserializeOwned + 'static>(
    answers: Vec<Option<Outcome>>,
    table: Table<'_>,
    pass: u32,
    chunks: usize,
) -> Vec<Round<R>> {
    let mut rounds: Vec<Round<R>> = (0..chunks).map(|_| Round::Left).collect();
    let mut ran: Vec<Vec<(usize, bool)>> = vec![Vec::new(); answers.len()];
    let broken = |why: &str| Round::Ran(Err(Failed { error: TaskError::Codec(why.into()), started: true }));
    for (i, round) in rounds.iter_mut().enumerate() {
        let state = table.state(i, pass);
        match state {
            State::Free | State::Closed => {}
            State::Done(c) | State::Failed(c) if (c as usize) < answers.len() => {
                ran[c as usize].push((i, matches!(state, State::Done(_))))
            }
            State::Claimed(c) => *round = Round::Ran(Err(blame(answers.get(c as usize)))),
            _ => *round = broken("a helper wrote a chunk state of no claimer of this pass"),
        }
    }
    for (answer, mine) in answers.iter().zip(ran) {
        let items = match answer {
            Some(Ok(items)) => chunk_items(items),
            _ => {
                // Its helper died (or was stopped) after running these:
                // the results are lost; the rows a failed one wrote, unknown.
                for (i, ok) in mine {
                    rounds[i] = if ok { Round::Lost } else { Round::Ran(Err(blame(Some(answer)))) };
                }
                continue;
            }
        };
        match items {
            Ok(items) if items.count as usize == mine.len() => {
                for (&(i, _), r) in mine.iter().zip(codec::items::<R>(&items)) {
                    rounds[i] = Round::Ran(r.map_err(failed_in_task));
                }
            }
            Ok(_) => mine.iter().for_each(|&(i, _)| rounds[i] = broken("a claim answer does not match its claims")),
            Err(f) => mine.iter().for_each(|&(i, _)| rounds[i] = Round::Ran(Err(failed_in_task(f.clone())))),
        }
    }
    rounds
}

/// Why a chunk claimed and never finished failed: its claimer's failure.
fn blame(answer: Option<&Option<Outcome>>) -> Failed {
    match answer {
        Some(Some(Err(failed))) => Failed { error: failed.error.clone(), started: true },
        Some(Some(Ok(_))) => Failed {
            error: TaskError::Codec("a helper answered without finishing a chunk it claimed".into()),
            started: true,
        },
        _ => Failed { error: TaskError::Terminated, started: true },
    }
}
