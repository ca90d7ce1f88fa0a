"""The seed's ``queue_pattern.py`` (persistent workers reading a queue
until a poison pill) on shmkit: a ``shmkit.Queue`` of fixed-size records
with an end-of-stream call instead of pills, workers in a ``ProcessPool``.
The queue ends with ``shutdown()``: each worker drains what was sent,
then gets ``shmkit.ShutDown``; nothing has to count workers to send one
pill each, and a worker killed mid-item fails only its own future."""

from os import cpu_count

import shmkit


def heavy_computation(item: int) -> int:
    return sum(i * i for i in range(item))


def worker(input_queue: shmkit.Queue, output_queue: shmkit.Queue, worker_id: int) -> int:
    """Worker: reads from the input queue until it is shut down."""
    done = 0
    while True:
        try:
            item = input_queue.get()  # Block until an item is available
        except shmkit.ShutDown:  # The end of the stream
            return done
        output_queue.put((worker_id, item, heavy_computation(item)))
        done += 1


def process_with_workers(items: list, num_workers: int = None) -> list:
    """Process items using persistent worker processes"""
    num_workers = num_workers or cpu_count()

    record = [("worker", "i4"), ("item", "i8"), ("result", "i8")]
    with (
        shmkit.Queue.create_unique("i8", capacity=1024) as input_queue,  # Tasks go in here
        shmkit.Queue.create_unique(record, capacity=len(items)) as output_queue,  # Results come out here
        shmkit.ProcessPool(num_workers) as pool,
    ):
        workers = [pool.submit(worker, input_queue, output_queue, i) for i in range(num_workers)]

        # Add all items to the input queue, then end the stream (no poison pills)
        for item in items:
            input_queue.put(item)
        input_queue.shutdown()

        # Collect results from the output queue
        results = [output_queue.get()[2] for _ in range(len(items))]
        assert sum(w.result() for w in workers) == len(items)
    return results


if __name__ == "__main__":
    results = process_with_workers(list(range(1000)))
    assert sorted(results) == sorted(heavy_computation(i) for i in range(1000))
    print(f"{len(results)} results from {cpu_count()} workers")
