"""The seed's ``pool_basic.py`` on shmkit: only the import changed
(``from shmkit import Pool``), and the work is a tenth of the seed's (1
million iterations a task, not 10) so that the test suite runs it fast. A helper killed mid-task (OOM) fails that
task with ``shmkit.WorkerDied`` instead of hanging ``pool.map``."""

import time
from multiprocessing import cpu_count

from shmkit import Pool


def cpu_intensive_task(n):
    """Example CPU-intensive task that squares numbers"""
    total = 0
    # Perform expensive computation - iterate n times
    for i in range(n):
        total += i**2  # Square each number and accumulate
    return total


def main():
    # Create 8 identical tasks, each processing 1 million iterations
    numbers = [1_000_000] * 8  # 8 tasks

    # Sequential execution - processes one task at a time
    start = time.time()
    results_seq = [cpu_intensive_task(n) for n in numbers]
    print(f"Sequential: {time.time() - start:.2f}s")

    # Parallel execution - distributes tasks across all CPU cores
    start = time.time()
    with Pool(processes=cpu_count()) as pool:  # Create pool with one process per CPU
        results_par = pool.map(cpu_intensive_task, numbers)  # Map function to all inputs
    print(f"Parallel: {time.time() - start:.2f}s")
    assert results_par == results_seq


if __name__ == "__main__":
    main()
