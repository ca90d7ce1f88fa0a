//! `ReplicatedArray`: one read-only copy per node, not one per rank.

use ::mpi::collective::Root;
use ::mpi::datatype::Equivalence;
use ::mpi::topology::Communicator;
use ndarray::{ArrayView, ArrayViewMut, IxDyn};

use super::{Cluster, Result};
use crate::array::View;
use crate::{Element, SharedArray};

/// Elements per broadcast: MPI counts are `i32`.
const BROADCAST_CHUNK: usize = 1 << 28;

/// A read-only array every rank can read, stored once per node: a lookup
/// table, a model, a mesh. The node's leader creates and fills it; the
/// other ranks of the node open the same segment by name.
pub struct ReplicatedArray<T: Element + Equivalence> {
    seg: SharedArray<T, IxDyn>,
}

impl<T: Element + Equivalence> ReplicatedArray<T> {
    /// Creates it from `data` on world rank 0 (ignored elsewhere), sent to
    /// one rank per node: a broadcast among node leaders (collective).
    pub fn broadcast(
        cluster: &Cluster,
        tag: &str,
        shape: &[usize],
        data: Option<ArrayView<'_, T, IxDyn>>,
    ) -> Result<Self> {
        cluster.same_everywhere(&format!("shape and type ({})", T::DTYPE.descr()), tag, shape)?;
        let fits = data.as_ref().is_some_and(|d| d.shape() == shape);
        cluster.agree(match (cluster.world_rank(), fits) {
            (0, false) => {
                Err(crate::Error::InvalidArgument(format!("world rank 0 must pass an array of shape {shape:?}")))
            }
            _ => Ok(()),
        })?;
        let name = cluster.segment_name(tag);
        let create = || SharedArray::<T, IxDyn>::create(&name, IxDyn(shape));
        let mut seg =
            cluster.leader_then_others(create, || SharedArray::open_with_shape(&name, IxDyn(shape)), |_| Ok(()))?;
        // Every node has its segment now; leaders fill theirs from rank 0's
        // data, the others wait at the node barrier before reading.
        let mine = cluster.leaders.as_ref().map(|_| seg.as_slice_mut());
        let mut all = cluster.agree(mine.transpose())?;
        if let (Some(leaders), Some(all)) = (&cluster.leaders, all.as_mut()) {
            if let (0, Some(d)) = (leaders.rank(), &data) {
                match d.as_slice() {
                    Some(src) => all.copy_from_slice(src), // shapes were checked equal above
                    None => all.iter_mut().zip(d.iter()).for_each(|(x, &v)| *x = v),
                }
            }
            for chunk in all.chunks_mut(BROADCAST_CHUNK) {
                leaders.process_at_rank(0).broadcast_into(chunk);
                crate::fault::point("mpi-broadcast");
            }
        }
        drop(all);
        cluster.node_barrier();
        Ok(ReplicatedArray { seg })
    }

    /// Creates it with `fill`, run once per node by the node's leader
    /// (collective): for data each node can compute or read itself.
    pub fn create_with(
        cluster: &Cluster,
        tag: &str,
        shape: &[usize],
        fill: impl FnOnce(ArrayViewMut<'_, T, IxDyn>),
    ) -> Result<Self> {
        cluster.same_everywhere(&format!("shape and type ({})", T::DTYPE.descr()), tag, shape)?;
        let name = cluster.segment_name(tag);
        let make = || SharedArray::<T, IxDyn>::create_with(&name, IxDyn(shape), fill);
        let seg = cluster.leader_then_others(make, || SharedArray::open_with_shape(&name, IxDyn(shape)), |_| Ok(()))?;
        Ok(ReplicatedArray { seg })
    }

    /// The array, read-only.
    pub fn view(&self) -> crate::Result<View<'_, T, IxDyn>> {
        self.seg.view()
    }

    /// The node segment's name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }
}
