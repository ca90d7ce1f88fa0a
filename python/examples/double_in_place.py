"""The ``shared_memory`` seed, with shmkit: a worker doubles an array in place.

The worker gets the array's name (pickled), not its data, nor its shape
and dtype: those are in the segment. Only the creator removes the name
(here, leaving the ``with`` block; ``shmkit.gc()`` if it crashed), and no
resource tracker removes it behind anyone's back.
"""

import multiprocessing

import numpy as np

import shmkit


def worker(shared: shmkit.SharedArray) -> None:
    array = np.asarray(shared)  # zero-copy: the shared memory itself
    array *= 2


def main() -> None:
    original = np.array([1, 2, 3, 4, 5], dtype=np.float64)
    with shmkit.create_from(None, original) as shared:  # a fresh unique name
        p = multiprocessing.get_context("spawn").Process(target=worker, args=(shared,))
        p.start()
        p.join()
        print(f"Result: {np.asarray(shared)}")  # [ 2.  4.  6.  8. 10.]


if __name__ == "__main__":
    main()
