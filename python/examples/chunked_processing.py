"""The seed's ``chunked_processing.py`` on shmkit: only the import and the
pool's construction changed. (``ProcessPool.map(fn, items, chunksize=500)``
does the chunking itself.)"""

from collections.abc import Iterator
from os import cpu_count

from shmkit import ProcessPool


def process_item(item: int) -> int:
    return item * item


def chunk_list(lst: list, chunk_size: int) -> Iterator[list]:
    """Split list into chunks of specified size"""
    for i in range(0, len(lst), chunk_size):
        yield lst[i : i + chunk_size]  # Yield chunks without copying


def process_chunk(chunk: list) -> list:
    """Process a chunk of items - one function call per chunk"""
    return [process_item(item) for item in chunk]


def parallel_process(items: list, chunk_size: int = 100) -> list:
    """Process items in parallel chunks to reduce IPC overhead"""
    # Convert to list of chunks
    chunks = list(chunk_list(items, chunk_size))

    # Each worker processes one chunk (many items)
    with ProcessPool(max_workers=cpu_count()) as executor:
        results = list(executor.map(process_chunk, chunks))

    # Flatten results back into single list
    return [item for chunk in results for item in chunk]


if __name__ == "__main__":
    # Usage - 10000 items processed in chunks of 500
    items = list(range(10000))
    results = parallel_process(items, chunk_size=500)
    assert results == [i * i for i in items]
    print(f"{len(results)} items in {len(items) // 500} chunks")
