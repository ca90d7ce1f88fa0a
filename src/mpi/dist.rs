//! `DistArray`: a global array whose rows are spread over nodes, one
//! segment per node.

use std::ops::Range;

use ::mpi::collective::{CommunicatorCollectives, Root};
use ::mpi::datatype::{Equivalence, Partition, PartitionMut};
use ::mpi::point_to_point as p2p;
use ::mpi::topology::Communicator;
use ndarray::{Array2, ArrayView2, Ix2};

use super::{block, count, Cluster, MpiError, Result, Sweep};

use crate::array::{reduce, View, ViewMut};
use crate::{Element, SharedArray};

/// A global array of `T` whose rows (first axis) are block-distributed
/// over the nodes of a [`Cluster`], and within a node over its ranks.
///
/// Each node holds one segment with its block of rows plus `halo` rows
/// above and below, for stencils that read their neighbours' rows: the
/// node's leader creates it and the node's other ranks open it by name.
/// Each rank owns (writes) its own rows; every rank of a node can read
/// the whole node block. Axes after the first are flattened: a row is
/// `row_len` elements.
pub struct DistArray<'c, T: Element + Equivalence> {
    pub(super) cluster: &'c Cluster,
    pub(super) shape: Vec<usize>,
    pub(super) row_len: usize,
    pub(super) node_rows: Range<usize>,
    pub(super) rank_rows: Range<usize>,
    pub(super) halo: usize,
    pub(super) seg: SharedArray<T, Ix2>,
}

impl<'c, T: Element + Equivalence> DistArray<'c, T> {
    /// Creates a zeroed distributed array of global `shape` with `halo`
    /// rows on each side of every node's block (collective). `tag` names
    /// it within the job.
    pub fn create(cluster: &'c Cluster, tag: &str, shape: &[usize], halo: usize) -> Result<Self> {
        let what = format!("shape, halo and type ({})", T::DTYPE.descr());
        cluster.same_everywhere(&what, tag, &[&[halo][..], shape].concat())?;
        let (&rows, rest) = shape.split_first().ok_or_else(|| MpiError::Invalid("a 0-d array has no rows".into()))?;
        // Checked as SharedArray checks its shapes, on every rank alike
        // (same arguments): every rank fails here, before any collective.
        let overflow = || MpiError::Segment {
            node: cluster.node_index(),
            source: crate::Error::SizeOverflow { shape: shape.to_vec(), itemsize: size_of::<T>() },
        };
        crate::segment::data_len(shape, size_of::<T>()).ok_or_else(overflow)?;
        let row_len = rest.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(overflow)?;
        let node_rows = block(rows, cluster.nodes(), cluster.node_index());
        let within = block(node_rows.len(), cluster.node_size(), cluster.node_rank());
        let rank_rows = node_rows.start + within.start..node_rows.start + within.end;
        if halo > 0 && cluster.nodes() > 1 && rows / cluster.nodes() < halo {
            return Err(MpiError::Invalid(format!(
                "{rows} rows over {} nodes leave fewer than {halo} halo rows",
                cluster.nodes()
            )));
        }
        // A halo swap sends `halo` rows in one message.
        super::count(halo.checked_mul(row_len).ok_or_else(overflow)?)?;
        let name = cluster.segment_name(tag);
        let local_rows = halo.checked_mul(2).and_then(|h| h.checked_add(node_rows.len())).ok_or_else(overflow)?;
        let local = (local_rows, row_len);
        // The leader makes the segment, with no page reserved; then every
        // rank reserves and maps its own rows at once (the leader also the
        // halos): the node's pages are zeroed by all its ranks, not by one.
        let rows = (rank_rows.start - node_rows.start + halo)..(rank_rows.end - node_rows.start + halo);
        let reserve = |a: &SharedArray<T, Ix2>| {
            if cluster.is_leader() {
                a.reserve_rows(0..halo)?;
                a.reserve_rows(local_rows - halo..local_rows)?;
            }
            a.reserve_rows(rows)
        };
        let seg = cluster.leader_then_others(
            || SharedArray::create_sparse(&name, local),
            || SharedArray::open_with_shape(&name, local),
            reserve,
        )?;
        Ok(DistArray { cluster, shape: shape.to_vec(), row_len, node_rows, rank_rows, halo, seg })
    }

    /// The global shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Elements per row (the product of the axes after the first).
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Global rows this rank owns.
    pub fn rank_rows(&self) -> Range<usize> {
        self.rank_rows.clone()
    }

    /// Global rows this node holds (without halos).
    pub fn node_rows(&self) -> Range<usize> {
        self.node_rows.clone()
    }

    /// Halo rows on each side of the node's block.
    pub fn halo(&self) -> usize {
        self.halo
    }

    /// The segment's row of global row `g`, for rows from
    /// `node_rows().start - halo` to `node_rows().end + halo` (halo rows
    /// included); `None` for rows this node does not hold.
    pub fn local_row(&self, g: usize) -> Option<usize> {
        let local = g.checked_add(self.halo)?.checked_sub(self.node_rows.start)?;
        (local < self.node_rows.len() + 2 * self.halo).then_some(local)
    }

    /// This rank's rows, read-only.
    pub fn my_rows(&self) -> crate::Result<View<'_, T, Ix2>> {
        self.seg.rows(self.local_rows(&self.rank_rows))
    }

    /// This rank's rows, to write: ranks of a node write disjoint rows at
    /// once without locks.
    pub fn my_rows_mut(&mut self) -> crate::Result<ViewMut<'_, T, Ix2>> {
        let rows = self.local_rows(&self.rank_rows);
        self.seg.rows_mut(rows)
    }

    /// The node's whole block, halos included, read-only: what a stencil
    /// reads. Drop it before the node's next barrier.
    pub fn node_view(&self) -> crate::Result<View<'_, T, Ix2>> {
        self.seg.view()
    }

    /// Segment rows of `global`, which lies within this node's rows.
    pub(super) fn local_rows(&self, global: &Range<usize>) -> Range<usize> {
        let start = global.start + self.halo - self.node_rows.start;
        start..start + global.len()
    }

    /// Starts a double-buffered sweep (collective): each
    /// [`step`](Sweep::step) reads one of `self` and `next` and writes this
    /// rank's rows of the other, then sends edge rows to the neighbouring
    /// nodes' halos; the first step reads `self`, whose halo rows this
    /// brings in first. Both arrays need the same shape and halo.
    ///
    /// It claims this rank's rows of both arrays once, for the whole sweep
    /// (the node's first rank also the top halo rows, its last rank the
    /// bottom ones), and agrees once that every rank could: so a step
    /// makes no claim, needs no agreement and cannot fail. While it runs,
    /// other views of these arrays anywhere are refused ([`Error::Busy`](crate::Error::Busy)), and
    /// if one is live when it starts, every rank gets the error.
    ///
    /// ```no_run
    /// use shmkit::mpi::{Cluster, DistArray, Step};
    /// let (_universe, cluster) = Cluster::init()?;
    /// let n = 1024;
    /// let mut a = DistArray::<f64>::create(&cluster, "a", &[n, n], 1)?;
    /// let mut b = DistArray::<f64>::create(&cluster, "b", &[n, n], 1)?;
    /// let mut sweep = a.sweep(&mut b)?;
    /// for _ in 0..100 {
    ///     sweep.step(|Step { current, mut next, at, .. }| {
    ///         for (i, mut row) in next.outer_iter_mut().enumerate() {
    ///             let (l, up, down) = (current.row(at + i), current.row(at + i - 1), current.row(at + i + 1));
    ///             row.iter_mut().enumerate().for_each(|(j, x)| *x = (l[j] + up[j] + down[j]) / 3.0);
    ///         }
    ///     });
    /// }
    /// let total = sweep.finish().sum()?;
    /// # Ok::<(), shmkit::mpi::MpiError>(())
    /// ```
    pub fn sweep<'a>(&'a mut self, next: &'a mut DistArray<'c, T>) -> Result<Sweep<'a, 'c, T>> {
        Sweep::start(self, next)
    }

    /// Sum of all elements (collective), as [`Pool::sum`](crate::Pool::sum)
    /// and numpy sum them: exact for integers (as `i64` or `u64`;
    /// [`MpiError::Overflow`] past those), in `f64` for floats, NaN if any
    /// element is NaN. Each rank sums its rows; the partial sums are
    /// combined in row order, so every rank gets the same bits.
    pub fn sum(&self) -> Result<T::Sum> {
        let partial = self.reduce(|v| Some(reduce::sum(v)), T::merge)?;
        T::total(partial.unwrap_or_default()).ok_or(MpiError::Overflow { dtype: T::DTYPE.descr() })
    }

    /// Smallest element, `None` if the array is empty (collective). NaNs
    /// are skipped, as numpy's `nanmin` does (NaN if every element is).
    pub fn min(&self) -> Result<Option<T>> {
        let pick = |a, b| reduce::pick(Some(a), Some(b), |a, b| b < a).expect("two values");
        self.reduce(|v| reduce::min(v), pick)
    }

    /// Largest element, `None` if the array is empty (collective). NaNs
    /// are skipped, as numpy's `nanmax` does (NaN if every element is).
    pub fn max(&self) -> Result<Option<T>> {
        let pick = |a, b| reduce::pick(Some(a), Some(b), |a, b| b > a).expect("two values");
        self.reduce(|v| reduce::max(v), pick)
    }

    /// A custom reduction (collective): `local` reduces this rank's rows
    /// (`None` for none), the partial results of every rank are gathered
    /// to all, and `combine` folds them in row order (whatever the ranks'
    /// order, `--map-by node` included), so every rank gets the same
    /// result whatever `combine` is.
    ///
    /// One collective call: each rank's record (whether its rows could be
    /// read, whether it has a value, its first row, the value) goes to
    /// every rank in one all-gather, which also serves as the agreement
    /// (every rank sees every rank's failure).
    pub fn reduce<R: bytemuck::Pod>(
        &self,
        local: impl FnOnce(&View<'_, T, Ix2>) -> Option<R>,
        combine: impl Fn(R, R) -> R,
    ) -> Result<Option<R>> {
        let mine = self.my_rows().map(|v| local(&v));
        let world = &self.cluster.world;
        let n = world.size() as usize;
        // Values travel as bytes: any Pod result, not only MPI's types.
        let (size, head) = (size_of::<R>(), 16);
        let mut record = vec![0u8; head + size];
        record[0] = u8::from(mine.is_err());
        record[1] = u8::from(matches!(mine, Ok(Some(_))));
        record[8..16].copy_from_slice(&(self.rank_rows.start as u64).to_le_bytes());
        if let Ok(Some(v)) = &mine {
            record[head..].copy_from_slice(bytemuck::bytes_of(v));
        }
        let mut all = vec![0u8; n * record.len()];
        world.all_gather_into(&record[..], &mut all[..]);
        let records: Vec<&[u8]> = all.chunks(record.len()).collect();
        if let Err(source) = mine {
            return Err(MpiError::Segment { node: self.cluster.node_index(), source });
        }
        if records.iter().any(|r| r[0] != 0) {
            return Err(MpiError::OtherNode);
        }
        let first = |r: &[u8]| u64::from_le_bytes(r[8..16].try_into().expect("8 bytes"));
        let mut parts: Vec<(u64, R)> = records
            .iter()
            .filter(|r| r[1] == 1)
            .map(|r| (first(r), bytemuck::pod_read_unaligned(&r[head..])))
            .collect();
        parts.sort_by_key(|(f, _)| *f); // row order: the same on every rank
        Ok(parts.into_iter().map(|(_, v)| v).reduce(combine))
    }

    /// The whole array on world rank 0 (`None` elsewhere), as rows by
    /// `row_len` (collective). Only node leaders send: one message per node.
    pub fn gather(&self) -> Result<Option<Array2<T>>> {
        let cluster = self.cluster;
        let (counts, displs) = self.partition(cluster.nodes())?;
        cluster.node_barrier(); // every rank's writes are in the segment
        let mine =
            cluster.leaders.as_ref().map(|_| self.seg.rows(self.local_rows(&self.node_rows)).map(|v| v.to_owned()));
        let block = cluster.agree(mine.transpose())?;
        let mut out = None;
        if let (Some(leaders), Some(block)) = (&cluster.leaders, block) {
            let send = block.as_slice().expect("an owned array is contiguous");
            let root = leaders.process_at_rank(0);
            if leaders.rank() == 0 {
                let mut all = Array2::<T>::from_elem((self.shape[0], self.row_len), T::zeroed());
                let buf = all.as_slice_mut().expect("a fresh array is contiguous");
                root.gather_varcount_into_root(send, &mut PartitionMut::new(buf, counts, displs));
                out = Some(all);
            } else {
                root.gather_varcount_into(send);
            }
        }
        cluster.node_barrier();
        Ok(out)
    }

    /// Fills the array from `data` on world rank 0 (ignored elsewhere;
    /// `rows × row_len` elements) (collective). Only node leaders receive.
    pub fn scatter(&mut self, data: Option<ArrayView2<'_, T>>) -> Result<()> {
        let cluster = self.cluster;
        let (counts, displs) = self.partition(cluster.nodes())?;
        let fits = data.as_ref().is_some_and(|d| d.dim() == (self.shape[0], self.row_len));
        let data = cluster.agree(match (cluster.world_rank(), fits) {
            (0, true) => Ok(data.as_ref().map(|d| d.as_standard_layout())), // a copy only if not C-order
            (0, false) => Err(crate::Error::InvalidArgument("world rank 0 must pass rows × row_len elements".into())),
            _ => Ok(None),
        })?;
        cluster.node_barrier(); // no rank still reads the old values
        let rows = self.local_rows(&self.node_rows);
        let mine = cluster.leaders.as_ref().map(|_| self.seg.rows_mut(rows));
        let mut block = cluster.agree(mine.transpose())?;
        if let (Some(leaders), Some(block)) = (&cluster.leaders, block.as_mut()) {
            let recv = block.as_slice_mut().expect("rows of a C-order array are contiguous");
            let root = leaders.process_at_rank(0);
            match &data {
                Some(all) => {
                    let send = all.as_slice().expect("standard layout");
                    root.scatter_varcount_into_root(&Partition::new(send, counts, displs), recv);
                }
                _ => root.scatter_varcount_into(recv),
            }
        }
        drop(block);
        cluster.node_barrier();
        Ok(())
    }

    /// Element counts and offsets of every node's block, in node order;
    /// the same on every rank (it depends on the shape and node count
    /// only), so every rank fails together when they do not fit MPI's
    /// counts, before any collective call.
    fn partition(&self, nodes: usize) -> Result<(Vec<i32>, Vec<i32>)> {
        count(self.shape[0].saturating_mul(self.row_len))?;
        let blocks = (0..nodes).map(|i| block(self.shape[0], nodes, i));
        let counts = blocks.clone().map(|b| count(b.len() * self.row_len)).collect::<Result<_>>()?;
        let displs = blocks.map(|b| count(b.start * self.row_len)).collect::<Result<_>>()?;
        Ok((counts, displs))
    }

    /// Copies each node's edge rows into its neighbours' halo rows
    /// (collective). Only node leaders talk MPI, with the nodes above and
    /// below. Edge halos of the first and last node are left as they are.
    ///
    /// Synchronisation, per call: the ranks of each node meet at a node
    /// barrier (their rows are written), the leaders swap edges, and one
    /// one-byte allreduce over the world tells every rank whether every
    /// leader succeeded; it also orders the leaders' halo writes before
    /// any rank returns. On one node, or without halos, only the node
    /// barrier. After an error the halo rows are unspecified.
    pub fn exchange_halos(&mut self) -> Result<()> {
        let cluster = self.cluster;
        cluster.node_barrier(); // every rank is done with the node's rows
        if self.halo == 0 || cluster.nodes() == 1 {
            return Ok(()); // nothing crosses a node
        }
        let outcome = match &cluster.leaders {
            Some(leaders) => self.swap_edges(leaders),
            None => Ok(()),
        };
        cluster.agree(outcome)
    }

    /// A leader's part of [`exchange_halos`](Self::exchange_halos). A
    /// leader that cannot read its edges still takes part in every swap
    /// (sending zeros), so that no neighbour waits for it for good.
    fn swap_edges(&mut self, leaders: &::mpi::topology::SimpleCommunicator) -> crate::Result<()> {
        let (h, len) = (self.halo, self.node_rows.len() + 2 * self.halo);
        let copy = |rows: Range<usize>| self.seg.rows(rows).map(|v| v.iter().copied().collect::<Vec<T>>());
        let zeros = || vec![T::zeroed(); h * self.row_len];
        let (top, bottom, mut outcome) = match (copy(h..2 * h), copy(len - 2 * h..len - h)) {
            (Ok(top), Ok(bottom)) => (top, bottom, Ok(())),
            (Err(e), _) | (_, Err(e)) => (zeros(), zeros(), Err(e)),
        };
        let (me, n) = (leaders.rank(), leaders.size());
        let (mut from_above, mut from_below) = (zeros(), zeros());
        // My top rows go up and the bottom rows of the node above come
        // down, and the same below. Even nodes swap downwards first and
        // odd ones upwards first, so the pairs (0,1), (2,3), ... swap at
        // once and then (1,2), (3,4), ...: two rounds whatever the number
        // of nodes, not a chain through all of them.
        for round in 0..2 {
            let upwards = (me % 2 == 1) == (round == 0);
            match upwards {
                true if me > 0 => {
                    let up = leaders.process_at_rank(me - 1);
                    p2p::send_receive_into(&top[..], &up, &mut from_above[..], &up);
                }
                false if me + 1 < n => {
                    let down = leaders.process_at_rank(me + 1);
                    p2p::send_receive_into(&bottom[..], &down, &mut from_below[..], &down);
                }
                _ => {}
            }
            crate::fault::point("mpi-halo");
        }
        if outcome.is_ok() && me > 0 {
            outcome = self.write_rows(0..h, &from_above);
        }
        if outcome.is_ok() && me + 1 < n {
            outcome = self.write_rows(len - h..len, &from_below);
        }
        outcome
    }

    fn write_rows(&mut self, rows: Range<usize>, data: &[T]) -> crate::Result<()> {
        let mut view = self.seg.rows_mut(rows)?;
        view.as_slice_mut().expect("rows of a C-order array are contiguous").copy_from_slice(data);
        Ok(())
    }
}
