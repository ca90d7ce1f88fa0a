//! A claim job in a helper: chunks of an array pass taken one after
//! another from the pass's claim table (see `transport::claims`) until
//! none is left.

use crate::pool::helper::cache::Cache;
use crate::pool::helper::registry::Registry;
use crate::pool::transport::codec;
use crate::pool::transport::region::Region;
use crate::pool::transport::wire::{Appender, ChunkArgs, ClaimRef, Failure, Items};

/// Results (and errors) a claimer gathers before it stops claiming and
/// answers: all of them go back in one message, which must stay well
/// within a frame.
const ANSWER_BYTES: usize = 64 << 20;
/// The most one chunk's result or error may add to an answer: a larger
/// one fails that chunk alone (`Codec`), and the answer still fits a frame.
const CHUNK_BYTES: usize = 128 << 20;

/// Runs row task `task` on each chunk this helper claims: `args` are the
/// task's arguments for rows 0..0 (a `ChunkArgs`, then any parameter),
/// into which each claimed chunk's rows go. One item back: the `Items`
/// of the chunks run, in the order claimed (which is row order).
pub(crate) fn run(
    registry: &Registry,
    cache: &mut Cache,
    region: &Region,
    task: u32,
    claim: ClaimRef,
    args: &[u8],
) -> Items {
    let mut answer = Items::with_count(1);
    let ran = match (region.claims(claim.table as usize), postcard::take_from_bytes::<ChunkArgs>(args)) {
        (None, _) => Err(Failure::Codec(format!("no claim table {}", claim.table))),
        (_, Err(e)) => Err(Failure::Codec(format!("a claim job's arguments: {e}"))),
        (Some(table), Ok((rows, rest))) => {
            let (mut ran, mut bytes) = (Items::with_count(0), 0);
            let mut one = Vec::new();
            while let Some((i, range)) = table.claim(claim.pass, claim.claimer, claim.chunks as usize) {
                crate::fault::point("helper-claimed");
                one.clear();
                let chunk = ChunkArgs { start: range.start, end: range.end, ..rows.clone() };
                let items = match postcard::to_extend(&chunk, Appender(&mut one)) {
                    Ok(_) => {
                        one.extend_from_slice(rest);
                        registry.run(cache, task, &one, 1)
                    }
                    Err(e) => failed(Failure::Codec(e.to_string())),
                };
                let ok = items.failures.is_empty();
                let (items, size) = bounded(items);
                bytes += size;
                append(&mut ran, items);
                table.finish(i, claim.pass, claim.claimer, ok);
                crate::fault::point("helper-finished-chunk");
                if bytes >= ANSWER_BYTES {
                    break; // the rest to other claimers, or one message per chunk
                }
            }
            Ok(ran)
        }
    };
    match ran.and_then(|ran| codec::put(&mut answer.data, &ran)) {
        Ok(()) => {}
        Err(why) => answer.fail(0, why),
    }
    answer
}

/// One chunk's `Items` and what they add to the answer, at most
/// [`CHUNK_BYTES`]: a larger result or error becomes a short `Codec`
/// failure saying so (the chunk ran: a pass that writes counts it in
/// doubt).
fn bounded(items: Items) -> (Items, usize) {
    let size = items.failures.iter().map(|(_, f)| super::encoded_len(f)).fold(items.data.len(), usize::saturating_add);
    match size <= CHUNK_BYTES {
        true => (items, size),
        false => {
            let why = format!("a chunk's result or error takes {size} bytes, more than a pass sends back per chunk");
            (failed(Failure::Codec(why)), 128)
        }
    }
}

fn failed(why: Failure) -> Items {
    let mut items = Items::with_count(1);
    items.fail(0, why);
    items
}

/// Appends one chunk's `Items` (of one item) to `all`.
fn append(all: &mut Items, one: Items) {
    match one.failures.into_iter().next() {
        Some((_, why)) => all.fail(all.count, why),
        None => all.data.extend_from_slice(&one.data),
    }
    all.count += 1;
}

/// The chunk answers of a claim job's one item, decoded.
pub(crate) fn chunk_items(answer: &Items) -> Result<Items, Failure> {
    codec::items::<Items>(answer).next().unwrap_or_else(|| Err(Failure::Codec("an empty claim answer".into())))
}
