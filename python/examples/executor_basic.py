"""The seed's ``executor_basic.py`` with its timeout variant, on shmkit:
only the import and the pool's construction changed. ``timeout=`` on the
pool is a real per-task deadline: a task past it is killed (its helper
replaced) and its future raises ``shmkit.TaskTimeout``, a
``TimeoutError``; the seed's ``future.cancel()`` on a running task now
stops it too."""

import time
from concurrent.futures import TimeoutError, as_completed
from os import cpu_count

from shmkit import ProcessPool


def heavy_computation(item_id: int) -> int:
    if item_id == 13:
        time.sleep(60)  # a stuck task: the stdlib pool would run it for a minute
    return sum(i * i for i in range(10_000 + item_id))


def process_item(item_id: int) -> dict:
    """Process a single item - runs in separate process"""
    # CPU-intensive processing happens here
    result = heavy_computation(item_id)
    return {"id": item_id, "result": result}


def process_with_timeout(items: list, timeout: float = 30.0) -> list:
    """Process with per-task timeout to prevent indefinite hangs"""
    results = []

    with ProcessPool(max_workers=cpu_count(), timeout=2.0) as executor:  # a task may run 2 s
        # Submit all tasks upfront
        futures = {executor.submit(process_item, item): item for item in items}

        # as_completed with timeout limits total wait time
        for future in as_completed(futures, timeout=timeout):
            item = futures[future]
            try:
                # Per-task timeout ensures no single task blocks too long
                result = future.result(timeout=10)  # Per-task timeout
                results.append(result)
            except TimeoutError:
                print(f"Item {item} timed out")
                future.cancel()  # Attempt to cancel the slow task
            except Exception as e:
                print(f"Item {item} failed: {e}")

    return results


if __name__ == "__main__":
    start = time.time()
    results = process_with_timeout(list(range(20)))
    print(f"{len(results)} results in {time.time() - start:.1f}s")
