"""The seed's ``maxtasksperchild`` pattern (recycle workers that leak
memory) on shmkit: only the import changed. Each helper is replaced after
``maxtasksperchild`` tasks, so what a task leaks is returned to the
system; a helper the OOM killer takes first fails its task alone."""

import os

from shmkit import Pool

_leaked: list[bytes] = []


def leaky_function(item: int) -> tuple[int, int]:
    _leaked.append(b"x" * 100_000)  # memory this helper never gives back
    return os.getpid(), len(_leaked)


if __name__ == "__main__":
    big_dataset = range(1000)
    with Pool(4, maxtasksperchild=100) as pool:
        # Each worker restarts after processing 100 tasks
        results = pool.map(leaky_function, big_dataset, chunksize=1)
    most = max(leaked for _, leaked in results)
    print(f"{len(results)} tasks, {len({pid for pid, _ in results})} helpers, at most {most} leaks in one helper")
