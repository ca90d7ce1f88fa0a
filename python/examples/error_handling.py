"""The seed's error-handling program on shmkit: only the import and the
pool's construction changed. Beyond the seed's ``ValueError``, one item
kills its helper (``os._exit``, as a segfault or the OOM killer would):
with ``concurrent.futures`` that breaks the whole pool
(``BrokenProcessPool`` for every item after it); here that item alone
fails (``shmkit.WorkerDied``) and the rest complete."""

import os
from concurrent.futures import as_completed
from dataclasses import dataclass
from os import cpu_count
from typing import Any, List

from shmkit import ProcessPool


@dataclass
class ProcessResult:
    """Structured result that captures success or failure"""

    item_id: int
    success: bool
    result: Any = None  # Present on success
    error: str = None  # Present on failure


def dangerous_computation(item_id: int) -> int:
    if item_id == 7:
        raise ValueError("item 7 is bad data")
    if item_id == 13:
        os._exit(1)  # the process dies: no exception to catch
    return item_id * 2


def safe_process(item_id: int) -> ProcessResult:
    """Process with error handling - never raises, always returns result"""
    try:
        result = dangerous_computation(item_id)
        return ProcessResult(item_id=item_id, success=True, result=result)
    except Exception as e:
        # Capture error and return structured failure
        return ProcessResult(item_id=item_id, success=False, error=str(e))


def process_all(item_ids: List[int]) -> List[ProcessResult]:
    """Process all items, capturing errors without stopping"""
    with ProcessPool(max_workers=cpu_count()) as executor:
        # Submit all tasks
        futures = {executor.submit(safe_process, item_id): item_id for item_id in item_ids}

        results = []
        for future in as_completed(futures):
            try:
                # Get result with timeout
                result = future.result(timeout=30)
                results.append(result)
            except Exception as e:
                # Handle executor-level failures (timeout, etc.)
                item_id = futures[future]
                results.append(ProcessResult(item_id=item_id, success=False, error=str(e)))

    return results


if __name__ == "__main__":
    results = sorted(process_all(list(range(20))), key=lambda r: r.item_id)
    failed = [(r.item_id, r.error) for r in results if not r.success]
    print(f"{sum(r.success for r in results)} succeeded; failed: {failed}")
