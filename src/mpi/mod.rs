//! Shared arrays across machines: MPI for what crosses nodes, named
//! segments for what stays on one (feature `mpi`, rsmpi 0.8).
//!
//! MPI-3 programs share memory within a node through shared windows, which
//! the Rust bindings lack; shmkit's named segments are that piece. A
//! [`Cluster`] groups the ranks of an MPI job by node; on each node one
//! rank, the *leader*, creates the node's segments and the others open them
//! by name, so a node holds one copy of its data however many ranks it
//! runs. Only leaders exchange data between nodes (gathers, scatters,
//! broadcasts, halo rows), or in a [`Sweep`] the ranks holding a node's
//! edge rows; the ranks of a node meet at a node barrier.
//!
//! - [`DistArray`]: a global array whose rows are block-distributed over
//!   nodes (and, within a node, over its ranks), with optional halo rows;
//!   reductions, gather, scatter and halo exchange.
//! - [`Sweep`]: a double-buffered stencil over two of them that claims
//!   its rows once, so its steps need no claim and no agreement.
//! - [`ReplicatedArray`]: one read-only copy per node, not per rank.
//!
//! **Nodes.** A node is what `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`
//! groups, unless `SHMKIT_MPI_NODE_SIZE=m` is set: then consecutive groups
//! of `m` ranks of each real node form one simulated node, so that
//! multi-node behaviour can be tested on one machine. Segment names carry a job id agreed at start
//! and the node index (`shmkit-mpi-JOB-nNODE-TAG`), so concurrent jobs and
//! simulated nodes never collide.
//!
//! **Faults.** A job ends with every segment removed on every node (the
//! leaders own them). A rank killed by a signal makes `mpirun` abort the
//! job, and so does a panic on any rank (see [`Cluster::new`]); whatever it leaves on a node is garbage that `shmkit gc` removes
//! (creators are gone). MPI errors abort the job, as MPI's default error
//! handler does; shmkit's own errors (a segment that cannot be made on
//! some node) are agreed on by every rank and returned as [`MpiError`].
//!
//! ```no_run
//! use shmkit::mpi::{Cluster, DistArray};
//! let (_universe, cluster) = Cluster::init()?;
//! let mut a = DistArray::<f64>::create(&cluster, "a", &[1_000_000], 0)?;
//! let first = a.rank_rows().start;
//! // agree: an error on any rank is returned on every rank
//! cluster.agree(a.my_rows_mut())?.iter_mut().enumerate().for_each(|(i, x)| *x = (first + i) as f64);
//! let total = a.sum()?; // local sums, combined in row order on every rank
//! # Ok::<(), shmkit::mpi::MpiError>(())
//! ```

mod dist;
mod replicated;
mod sweep;

use std::ops::Range;

pub use ::mpi as rsmpi;
use ::mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use ::mpi::environment::Universe;
use ::mpi::topology::{Color, Communicator, SimpleCommunicator};

pub use dist::DistArray;
pub use replicated::ReplicatedArray;
pub use sweep::{Step, Sweep};

/// The environment variable that makes consecutive groups of ranks form
/// simulated nodes.
pub const NODE_SIZE_VAR: &str = "SHMKIT_MPI_NODE_SIZE";

/// What went wrong in a collective shmkit call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MpiError {
    /// MPI was initialised already (by this program, before `Cluster::init`).
    #[error("MPI is already initialised: call Cluster::new(universe.world()) with your communicator instead")]
    AlreadyInitialized,
    /// `SHMKIT_MPI_NODE_SIZE` is not a positive whole number.
    #[error("{NODE_SIZE_VAR}={0:?} is not a positive whole number of ranks per node")]
    BadNodeSize(String),
    /// `SHMKIT_MPI_NODE_SIZE` is not the same on every rank.
    #[error(
        "{NODE_SIZE_VAR} differs between ranks (or is bad on some): set it alike for all (mpirun -x {NODE_SIZE_VAR})"
    )]
    NodeSizeDiffers,
    /// A segment operation failed on this rank's node.
    #[error("on node {node}: {source}")]
    Segment {
        /// The node it failed on.
        node: usize,
        /// What failed.
        #[source]
        source: crate::Error,
    },
    /// It failed on another node; every rank returns an error together.
    #[error("failed on another node (see that node's error); all ranks stop together")]
    OtherNode,
    /// A message would exceed what one MPI call can count (2^31 - 1 elements).
    #[error("{0} elements in one MPI message: more than MPI's counts can hold")]
    TooLarge(usize),
    /// Arguments do not fit the array.
    #[error("{0}")]
    Invalid(String),
    /// An integer sum does not fit `i64` / `u64` (numpy would wrap).
    #[error("the sum of this {dtype} array does not fit 64 bits; sum a wider type, or sum parts with reduce")]
    Overflow {
        /// The array's dtype.
        dtype: &'static str,
    },
}

/// Short for `Result<T, MpiError>`.
pub type Result<T, E = MpiError> = std::result::Result<T, E>;

/// The ranks of an MPI job grouped by node, and the names their segments
/// share. Every constructor and method of the types built on it that is
/// documented as *collective* must be called by every rank of the world.
pub struct Cluster {
    world: SimpleCommunicator,
    node: SimpleCommunicator,
    /// Node leaders only (one rank per node); `None` on the others.
    leaders: Option<SimpleCommunicator>,
    node_index: usize,
    nodes: usize,
    job: u64,
}

impl Cluster {
    /// Initialises MPI and groups the world's ranks by node (collective).
    /// Keep the `Universe`: MPI is finalised when it is dropped.
    ///
    /// From then on a panic on any rank aborts the whole job (see
    /// [`Cluster::new`]).
    pub fn init() -> Result<(Universe, Cluster)> {
        let universe = ::mpi::initialize().ok_or(MpiError::AlreadyInitialized)?;
        let cluster = Cluster::new(universe.world())?;
        Ok((universe, cluster))
    }

    /// Groups the ranks of `world` by node (collective over `world`): real
    /// shared-memory nodes, or simulated ones of `SHMKIT_MPI_NODE_SIZE`.
    ///
    /// It also makes a panic on any rank abort the whole job
    /// (`MPI_Abort`), after the panic message is printed: a rank that
    /// unwound instead would finalize MPI while the others wait for it in
    /// their next collective call, and the job would hang. (This applies to
    /// panics caught with `catch_unwind` too.)
    pub fn new(world: SimpleCommunicator) -> Result<Cluster> {
        abort_job_on_panic();
        let rank = world.rank();
        let simulated = node_size_everywhere(&world)?;
        // Simulated nodes are carved out of real ones, so that one never
        // spans two machines (its ranks could not share a segment).
        let shared = world.split_shared(rank);
        let node = match simulated {
            Some(m) => {
                let color = Color::with_value(shared.rank() / m);
                shared.split_by_color_with_key(color, shared.rank()).expect("a defined color")
            }
            None => shared,
        };
        let leader = node.rank() == 0;
        let leaders = world.split_by_color(if leader { Color::with_value(0) } else { Color::undefined() });
        let mut place = leaders.as_ref().map_or([0u64; 2], |l| [l.rank() as u64, l.size() as u64]);
        node.process_at_rank(0).broadcast_into(&mut place[..]);
        let mut job = if rank == 0 { crate::os::random_u64().unwrap_or(std::process::id() as u64) } else { 0 };
        world.process_at_rank(0).broadcast_into(&mut job);
        Ok(Cluster { world, node, leaders, node_index: place[0] as usize, nodes: place[1] as usize, job })
    }

    /// All ranks of the job.
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }

    /// The ranks of this node.
    pub fn node(&self) -> &SimpleCommunicator {
        &self.node
    }

    /// This rank's index in the world.
    pub fn world_rank(&self) -> usize {
        self.world.rank() as usize
    }

    /// Ranks in the world.
    pub fn world_size(&self) -> usize {
        self.world.size() as usize
    }

    /// This rank's index within its node (0 for the leader).
    pub fn node_rank(&self) -> usize {
        self.node.rank() as usize
    }

    /// Ranks on this node.
    pub fn node_size(&self) -> usize {
        self.node.size() as usize
    }

    /// Which node this rank is on, from 0.
    pub fn node_index(&self) -> usize {
        self.node_index
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// True on the one rank per node that creates its segments and talks
    /// to the other nodes.
    pub fn is_leader(&self) -> bool {
        self.leaders.is_some()
    }

    /// The job id every rank agreed on at start (names carry it).
    pub fn job_id(&self) -> u64 {
        self.job
    }

    /// Waits until every rank of this node has arrived.
    pub fn node_barrier(&self) {
        self.node.barrier();
    }

    /// The segment name of `tag` on this node: `shmkit-mpi-JOB-nNODE-TAG`.
    pub fn segment_name(&self, tag: &str) -> String {
        format!("shmkit-mpi-{:016x}-n{}-{tag}", self.job, self.node_index)
    }

    /// Runs `create` on the leader, `open` elsewhere after it, then `then`
    /// on every rank at once; all ranks learn whether every node
    /// succeeded (collective).
    fn leader_then_others<T>(
        &self,
        create: impl FnOnce() -> crate::Result<T>,
        open: impl FnOnce() -> crate::Result<T>,
        then: impl FnOnce(&T) -> crate::Result<()>,
    ) -> Result<T> {
        let made = if self.is_leader() { Some(create()) } else { None };
        crate::fault::point("mpi-created");
        let mut created_ok = u8::from(made.as_ref().is_none_or(|r| r.is_ok()));
        self.node.process_at_rank(0).broadcast_into(&mut created_ok);
        let mine = match (made, created_ok) {
            (Some(r), _) => r,
            (None, 1) => {
                crate::fault::point("mpi-opening");
                open()
            }
            (None, _) => Err(crate::Error::InvalidArgument("the node's leader failed to create it".into())),
        };
        // Each rank keeps what it opened until all agree: a leader that
        // failed in `then` would otherwise remove the segment before the
        // others have opened it, and they would report that instead of
        // the leader's error.
        let (value, outcome) = match mine {
            Ok(v) => {
                crate::fault::point("mpi-reserving");
                let r = then(&v);
                (Some(v), r)
            }
            Err(e) => (None, Err(e)),
        };
        self.agree(outcome).map(|()| value.expect("an Ok outcome has its value"))
    }

    /// Checks that every rank called with the same arguments (collective):
    /// `Err` on every rank alike if any differs, before a collective call
    /// that would otherwise wait for ever for ranks gone another way.
    pub(crate) fn same_everywhere(&self, what: &str, tag: &str, values: &[usize]) -> Result<()> {
        // FNV-1a over `what` (which names the element type), the tag and the
        // values: equal arguments, equal hashes.
        let text = what.bytes().chain(tag.bytes());
        let bytes = text.chain(values.iter().flat_map(|v| (*v as u64).to_le_bytes()));
        let hash = fnv1a(bytes);
        let mut extremes = [0u64; 2];
        self.world.all_reduce_into(&[hash, !hash][..], &mut extremes[..], SystemOperation::max());
        match extremes[0] == !extremes[1] {
            true => Ok(()),
            false => {
                Err(MpiError::Invalid(format!("the {what} of '{tag}' differs between ranks: pass every rank the same")))
            }
        }
    }

    /// Makes every rank fail if any rank failed (collective): each rank
    /// passes its own outcome, and all get `Ok` only if all passed `Ok`;
    /// the others get [`MpiError::OtherNode`]. For checks of your own
    /// before a collective call that some rank could otherwise skip.
    pub fn agree<T>(&self, mine: crate::Result<T>) -> Result<T> {
        let mut failed = u8::from(mine.is_err());
        let local = failed;
        self.world.all_reduce_into(&local, &mut failed, SystemOperation::max());
        match (mine, failed) {
            (Ok(v), 0) => Ok(v),
            (Err(source), _) => Err(MpiError::Segment { node: self.node_index, source }),
            (Ok(_), _) => Err(MpiError::OtherNode),
        }
    }
}

/// `SHMKIT_MPI_NODE_SIZE` as every rank of `world` has it (collective):
/// the same `Err` on every rank if it is bad anywhere or differs, so that
/// no rank goes on to split the world while another has returned.
fn node_size_everywhere(world: &SimpleCommunicator) -> Result<Option<i32>> {
    let mine = match std::env::var(NODE_SIZE_VAR) {
        Ok(v) => v.trim().parse::<i32>().ok().filter(|&m| m > 0).map(Some).ok_or(MpiError::BadNodeSize(v)),
        Err(_) => Ok(None),
    };
    // 0 for unset, -1 for bad; the largest value and the negated smallest.
    let code = mine.as_ref().map_or(-1, |m| m.unwrap_or(0));
    let mut extremes = [0i32; 2];
    world.all_reduce_into(&[code, -code][..], &mut extremes[..], SystemOperation::max());
    match mine {
        Err(e) => Err(e),
        Ok(_) if extremes[0] != -extremes[1] => Err(MpiError::NodeSizeDiffers),
        ok => ok,
    }
}

/// Chains a panic hook (once per process) that aborts the MPI job after
/// the previous hook has reported the panic.
fn abort_job_on_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if ::mpi::environment::is_initialized() && !::mpi::environment::is_finalized() {
                SimpleCommunicator::world().abort(101); // the exit code of a Rust panic
            }
        }));
    });
}

/// Part `i` of `0..total` split into `parts` nearly equal blocks, larger
/// ones first: how rows are spread over nodes, and over a node's ranks.
pub fn block(total: usize, parts: usize, i: usize) -> Range<usize> {
    let (base, extra) = (total / parts, total % parts);
    let start = i * base + i.min(extra);
    start..start + base + usize::from(i < extra)
}

/// FNV-1a of `bytes`: what ranks compare to learn whether they were all
/// given the same arguments.
pub(crate) fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// A count as MPI takes it.
pub(crate) fn count(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| MpiError::TooLarge(n))
}

#[cfg(test)]
mod tests {
    use super::block;

    #[test]
    fn blocks_cover_everything_once_and_differ_by_at_most_one() {
        for (total, parts) in [(10, 3), (3, 5), (0, 2), (1024, 4)] {
            let blocks: Vec<_> = (0..parts).map(|i| block(total, parts, i)).collect();
            assert_eq!(blocks.first().unwrap().start, 0);
            assert_eq!(blocks.last().unwrap().end, total);
            assert!(blocks.windows(2).all(|w| w[0].end == w[1].start));
            let (lo, hi) = (blocks.iter().map(|b| b.len()).min(), blocks.iter().map(|b| b.len()).max());
            assert!(hi.unwrap() - lo.unwrap() <= 1);
        }
    }
}
