//! `Sweep`: a double-buffered stencil over two `DistArray`s that claims
//! its rows once and then steps without a check that could fail.
//!
//! Why it exists: a step built from views and
//! [`exchange_halos`](DistArray::exchange_halos) pays, per rank and step,
//! four `fcntl` calls for its view claims, a node barrier, the leaders'
//! swaps (which wait for the node's last rank) and a world allreduce, the
//! agreement that no view or swap failed anywhere. A sweep takes its
//! claims once, agrees once, and from then on a step touches only memory
//! it holds and MPI (whose errors end the job): nothing in it can fail on
//! one rank alone, so no step needs an agreement.
//!
//! A step, on every rank:
//!
//! 1. the caller's stencil reads the current array's node block and
//!    writes this rank's rows of the next one;
//! 2. the node's first rank swaps its top edge rows with the last rank of
//!    the node above, and the node's last rank its bottom edge rows with
//!    the first rank of the node below, straight from and into the
//!    segments (no copies); when those ranks hold the edge rows
//!    themselves (at least `halo` rows each), they send right after their
//!    own stencil, without waiting for the rest of the node;
//! 3. the node's ranks meet at a node barrier: every row of the next
//!    array is written, and every halo row that borders another node
//!    (the first node's top halo and the last node's bottom one are never
//!    written: they keep what `create` put there, zeros), and nobody reads
//!    the current one any more;
//! 4. the arrays trade roles.
//!
//! Soundness: each rank holds an exclusive claim on its own rows of both
//! arrays (the first rank also on the top halo rows, the last on the
//! bottom ones), so every byte of both node blocks is claimed by a rank
//! of the sweep and no other shmkit view of them, anywhere, can exist
//! while it runs. Within the sweep, a step writes only the next array
//! (each rank its own rows and halo rows), reads only the current one,
//! and the node barrier separates one step's reads from the next step's
//! writes.

use std::ops::Range;

use ::mpi::collective::CommunicatorCollectives;
use ::mpi::datatype::Equivalence;
use ::mpi::point_to_point as p2p;
use ::mpi::topology::{Communicator, SimpleCommunicator};
use ndarray::{ArrayView2, ArrayViewMut2, Axis, Slice};

use super::{block, fnv1a, DistArray, MpiError, Result};
use crate::array::Claim;
use crate::Element;

/// A double-buffered sweep over two distributed arrays of one shape: each
/// [`step`](Self::step) reads one and writes the other, then they trade
/// roles. Made by [`DistArray::sweep`]; holds both arrays (and the claims
/// on this rank's rows of them) until [`finish`](Self::finish) or drop.
///
/// Collective throughout: every rank calls `step` the same number of
/// times, then `finish`. A rank that drops its sweep instead releases its
/// claims without waiting for the others, so a view it takes next may
/// find a neighbour's rows still claimed ([`Error::Busy`](crate::Error::Busy)).
pub struct Sweep<'a, 'c, T: Element + Equivalence> {
    grids: [&'a DistArray<'c, T>; 2],
    _claims: [Claim<'a>; 2],
    /// Which of `grids` holds the latest values.
    current: usize,
    steps: usize,
    plan: Plan,
    /// A duplicate of the world, for the swaps alone.
    comm: SimpleCommunicator,
}

/// `u64`s per rank in the all-gather that starts a sweep: failed, node,
/// rank in node, both segments' device and inode, the tags' hash.
const RECORD: usize = 8;

/// What one step gives the stencil.
pub struct Step<'s, T> {
    /// The current array's node block, halo rows included: its row `k`
    /// is global row `node_rows().start + k - halo` (see
    /// [`DistArray::local_row`]). Read-only: nobody writes it this step.
    /// The halo rows above the first node and below the last are never
    /// written: they stay zero.
    pub current: ArrayView2<'s, T>,
    /// This rank's rows of the next array, to write (every one of them:
    /// what is left unwritten keeps the value of two steps ago).
    pub next: ArrayViewMut2<'s, T>,
    /// The global rows `next` holds.
    pub rows: Range<usize>,
    /// The row of `current` that holds global row `rows.start`: row `i`
    /// of `next` is row `at + i` of `current`.
    pub at: usize,
}

/// Who swaps edge rows with whom; fixed for the sweep, the same on every
/// rank of a node where it must be (`own_edges`, `crosses`).
struct Plan {
    /// The world rank holding the node above's bottom edge (its last
    /// rank), if this is its node's first rank and a node lies above.
    up: Option<i32>,
    /// The world rank holding the node below's top edge (its first rank),
    /// if this is its node's last rank and a node lies below.
    down: Option<i32>,
    /// Odd nodes swap upwards first, even ones downwards: a one-rank node
    /// swaps both ways, and this pairs its swaps with its neighbours'.
    up_first: bool,
    /// Edge rows cross nodes at all (a halo, and more than one node).
    crosses: bool,
    /// The node's first and last rank hold `halo` rows or more each: they
    /// send rows they wrote themselves, so no node barrier goes first.
    own_edges: bool,
}

impl<'a, 'c, T: Element + Equivalence> Sweep<'a, 'c, T> {
    /// Claims this rank's rows of both arrays, agrees with every rank
    /// that all could, and brings the first array's halo rows in
    /// (collective).
    pub(super) fn start(first: &'a DistArray<'c, T>, second: &'a DistArray<'c, T>) -> Result<Self> {
        let cluster = first.cluster;
        let claims = Self::check(first, second).and_then(|()| Ok([claim(first)?, claim(second)?]));
        crate::fault::point("mpi-sweep-claimed");
        // One all-gather: every rank's outcome (the agreement), place (who
        // holds which node's edges) and arrays: the ranks of a node must
        // sweep the same two segments in the same order, or one would read
        // what another writes (their claims cover only their own rows).
        let (a, b) = (first.seg.id(), second.seg.id());
        let tags = tag_hash(first) ^ tag_hash(second).rotate_left(1);
        let mine = [
            u64::from(claims.is_err()),
            cluster.node_index() as u64,
            cluster.node_rank() as u64,
            a.dev,
            a.ino,
            b.dev,
            b.ino,
            tags,
        ];
        let mut all = vec![0u64; RECORD * cluster.world_size()];
        cluster.world.all_gather_into(&mine[..], &mut all[..]);
        let places: Vec<&[u64]> = all.chunks(RECORD).collect();
        let claims = match claims {
            Err(source) => return Err(MpiError::Segment { node: cluster.node_index(), source }),
            Ok(_) if mismatched(&places) => {
                return Err(MpiError::Invalid(
                    "every rank must sweep the same two arrays, in the same order (a.sweep(&mut b) on all)".into(),
                ))
            }
            Ok(_) if places.iter().any(|p| p[0] != 0) => return Err(MpiError::OtherNode),
            Ok(c) => c,
        };
        // Swaps go through a communicator of their own: a message of the
        // caller's between the same ranks can never be taken for halo rows.
        let comm = cluster.world.duplicate();
        let plan = Plan::new(first, &places);
        let sweep = Sweep { grids: [first, second], _claims: claims, current: 0, steps: 0, plan, comm };
        sweep.exchange(first, true); // the caller's rows may have been written just now
        Ok(sweep)
    }

    /// The same shape and halo on the same cluster: checked on every rank
    /// alike, and agreed on with the claims.
    fn check(first: &DistArray<'c, T>, second: &DistArray<'c, T>) -> crate::Result<()> {
        let same = first.shape == second.shape && first.halo == second.halo;
        match same && first.cluster.job == second.cluster.job {
            true => Ok(()),
            false => Err(crate::Error::InvalidArgument(format!(
                "a sweep needs two arrays of one shape and halo on one cluster: {:?} (halo {}) and {:?} (halo {})",
                first.shape, first.halo, second.shape, second.halo
            ))),
        }
    }

    /// One step (collective): `stencil` reads the current array and writes
    /// this rank's rows of the next; then edge rows cross to the
    /// neighbouring nodes' halos, the node's ranks meet, and the arrays
    /// trade roles. Nothing in it can fail: it returns nothing.
    pub fn step(&mut self, stencil: impl FnOnce(Step<'_, T>)) {
        let (cur, next) = (self.grids[self.current], self.grids[1 - self.current]);
        let rows = next.rank_rows();
        let at = rows.start + cur.halo - cur.node_rows.start;
        let own = Slice::from(at..at + rows.len());
        // SAFETY: every byte of both node blocks is claimed exclusively by
        // a rank of this sweep (checked by the agreement in `start`), so no
        // other shmkit view of them exists; within the sweep, nobody writes
        // `cur` during a step, and this rank alone writes its rows of `next`
        // (the node barrier at the end of the last step ordered the reads of
        // `next`, then `cur`, before these writes). Both views borrow the
        // arrays, which outlive this call.
        let (current, next_rows) = unsafe { (cur.seg.view_unchecked(), next.seg.view_mut_unchecked()) };
        stencil(Step { current, next: next_rows.slice_axis_move(Axis(0), own), rows, at });
        self.exchange(next, !self.plan.own_edges);
        self.current = 1 - self.current;
        self.steps += 1;
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Ends the sweep (collective): releases this rank's claims, waits
    /// until every rank of the node has, and returns the array that holds
    /// the latest values (the first after an even number of steps).
    pub fn finish(self) -> &'a DistArray<'c, T> {
        let latest = self.grids[self.current];
        drop(self); // the claims go before the barrier: views are free after it
        crate::fault::point("mpi-sweep-finish");
        latest.cluster.node_barrier();
        latest
    }

    /// Brings `grid`'s halo rows in from the neighbouring nodes and meets
    /// the node's other ranks; `barrier_first` when the edge rows may not
    /// all be written yet (or are not the sender's own).
    fn exchange(&self, grid: &DistArray<'c, T>, barrier_first: bool) {
        // A node of one rank has nobody to meet.
        let meet = || (grid.cluster.node_size() > 1).then(|| grid.cluster.node_barrier());
        if self.plan.crosses {
            if barrier_first {
                meet();
            }
            let (h, len) = (grid.halo, grid.node_rows.len() + 2 * grid.halo);
            let up = self.plan.up.map(|peer| (peer, h..2 * h, 0..h));
            let down = self.plan.down.map(|peer| (peer, len - 2 * h..len - h, len - h..len));
            let order = if self.plan.up_first { [up, down] } else { [down, up] };
            for (peer, edge, halo) in order.into_iter().flatten() {
                swap(grid, &self.comm, peer, edge, halo);
                crate::fault::point("mpi-sweep");
            }
        }
        meet();
    }
}

/// True if some rank sweeps other arrays than the rest of its node, or
/// other tags than the rest of the world: the same answer on every rank.
fn mismatched(places: &[&[u64]]) -> bool {
    let node_first = |n: u64| places.iter().find(|q| q[1] == n).expect("a rank's own node");
    places.iter().any(|p| p[7] != places[0][7] || p[3..7] != node_first(p[1])[3..7])
}

/// A hash of `grid`'s tag (its segment name after the job and node).
fn tag_hash<T: Element + Equivalence>(grid: &DistArray<'_, T>) -> u64 {
    let name = grid.seg.name();
    let tag = name.strip_prefix(&grid.cluster.segment_name("")).unwrap_or(name);
    fnv1a(tag.bytes())
}

impl Plan {
    /// From every rank's `[_, node, rank within node]`, in world order.
    fn new<T: Element + Equivalence>(grid: &DistArray<'_, T>, places: &[&[u64]]) -> Plan {
        let cluster = grid.cluster;
        let (node, rank, size) = (cluster.node_index(), cluster.node_rank(), cluster.node_size());
        let at = |n: usize, r: u64| places.iter().position(|p| p[1] == n as u64 && p[2] == r).map(|w| w as i32);
        let last_of = |n: usize| places.iter().filter(|p| p[1] == n as u64).count().saturating_sub(1) as u64;
        let crosses = grid.halo > 0 && cluster.nodes() > 1;
        let up = (crosses && rank == 0 && node > 0).then(|| at(node - 1, last_of(node - 1))).flatten();
        let down = (crosses && rank + 1 == size && node + 1 < cluster.nodes()).then(|| at(node + 1, 0)).flatten();
        // `block` gives the larger shares first: the last rank's is the smallest.
        let own_edges = block(grid.node_rows.len(), size, size - 1).len() >= grid.halo;
        Plan { up, down, up_first: node % 2 == 1, crosses, own_edges }
    }
}

/// This rank's part of `grid` to hold for a sweep: its rows, with the top
/// halo rows on its node's first rank and the bottom ones on its last.
fn claim<'a, T: Element + Equivalence>(grid: &'a DistArray<'_, T>) -> crate::Result<Claim<'a>> {
    let cluster = grid.cluster;
    let len = grid.node_rows.len() + 2 * grid.halo;
    let own = grid.local_rows(&grid.rank_rows);
    let start = if cluster.node_rank() == 0 { 0 } else { own.start };
    let end = if cluster.node_rank() + 1 == cluster.node_size() { len } else { own.end };
    grid.seg.claim_rows(start..end, true)
}

/// Sends `grid`'s rows `edge` to rank `peer` of `comm` (the sweep's
/// duplicate of the world) and receives its rows into `halo`, in place.
fn swap<T: Element + Equivalence>(
    grid: &DistArray<'_, T>,
    comm: &SimpleCommunicator,
    peer: i32,
    edge: Range<usize>,
    halo: Range<usize>,
) {
    let row = grid.row_len;
    let base = grid.seg.as_ptr();
    // SAFETY: both ranges lie within the node block (edge and halo rows of
    // a block of at least `halo` rows, checked by `DistArray::create`), so
    // the pointers stay inside the mapping, which `grid` keeps alive. The
    // halo rows are claimed by this rank and written by it alone; the edge
    // rows are written by nobody now (their owners finished the step's
    // stencil: this rank itself, or all ranks before the node barrier).
    // The two ranges do not overlap (edge rows are not halo rows).
    let (send, recv) = unsafe {
        let send = std::slice::from_raw_parts(base.add(edge.start * row), edge.len() * row);
        let recv = std::slice::from_raw_parts_mut(base.add(halo.start * row), halo.len() * row);
        (send, recv)
    };
    let peer = comm.process_at_rank(peer);
    let status = p2p::send_receive_into(send, &peer, recv, &peer);
    // Only the peer's swap uses this communicator, and it sends as many
    // rows as this rank receives (both derive them from the same shape).
    let got = status.count(T::equivalent_datatype());
    assert_eq!(got as usize, recv.len(), "a halo swap received {got} elements, not {}", recv.len());
}
