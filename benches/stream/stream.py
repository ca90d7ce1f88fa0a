"""The Python columns of the stream bench (benches/stream/main.rs): 4 MiB
numpy frames between processes through ``multiprocessing.Queue``, as
Python programs share frames today, and through shmkit's Python streams,
measured the way the Rust rows are.

- Publish -> seen: the producer writes a whole frame, stamps it with
  ``time.monotonic_ns()`` (CLOCK_MONOTONIC, as the Rust rows) and puts or
  publishes it; the consumer, in a process of its own, reads the clock
  when the frame is in its hands. The consumer busy-polls
  (``get_nowait``, ``next(block=False)``) or sleeps (``get()``,
  ``next()``).
- Throughput to 2 consumers: the producer writes every byte of each frame
  once; each consumer checks the frame's number at both ends.

Prints one JSON object: latencies in microseconds, frames per second.
"""

import argparse
import json
import multiprocessing as mp
import queue
import time

import numpy as np

import shmkit

FRAME = 4 << 20
PERIOD = {"busy": 0.001, "sleep": 0.003}
CTX = mp.get_context("spawn")  # separate programs: nothing inherited


def write(frame, mark):
    """Every byte once, then ``mark`` at both ends."""
    frame.fill(mark & 255)
    frame[:8].view("<u8")[0] = mark
    frame[-8:].view("<u8")[0] = mark


def marks(frame):
    return int(frame[:8].view("<u8")[0]), int(frame[-8:].view("<u8")[0])


def stamp(frame):
    frame[:8].view("<u8")[0] = time.monotonic_ns()


def pace(start, wait):
    time.sleep(max(0.0, PERIOD[wait] - (time.monotonic() - start)))


# -- multiprocessing.Queue ---------------------------------------------------


def queue_get(q, wait):
    if wait == "sleep":
        return q.get()
    while True:
        try:
            return q.get_nowait()
        except queue.Empty:
            pass


def queue_late(q, back, wait, frames):
    back.put("ready")
    late = []
    for _ in range(frames):
        frame = queue_get(q, wait)
        late.append(time.monotonic_ns() - marks(frame)[0])
        back.put(None)  # the producer may reuse its buffer
    back.put(late)


def queue_latency(wait, frames):
    q, back = CTX.Queue(), CTX.Queue()
    p = CTX.Process(target=queue_late, args=(q, back, wait, frames), daemon=True)
    p.start()
    assert back.get(timeout=60) == "ready"
    frame = np.empty(FRAME, np.uint8)
    for _ in range(frames):
        start = time.monotonic()
        write(frame, 0)
        stamp(frame)
        q.put(frame)
        back.get(timeout=60)
        pace(start, wait)
    late = back.get(timeout=60)
    p.join(60)
    return [ns / 1e3 for ns in late]


def queue_check(q, back, frames):
    back.put("ready")
    bad = sum(marks(q.get()) != (i, i) for i in range(frames))
    back.put(bad)


def queue_throughput(frames):
    qs = [CTX.Queue(maxsize=4) for _ in range(2)]
    back = CTX.Queue()
    ps = [CTX.Process(target=queue_check, args=(q, back, frames), daemon=True) for q in qs]
    for p in ps:
        p.start()
    for _ in ps:
        assert back.get(timeout=60) == "ready"
    # At most 4 frames per queue are unread, so a buffer is pickled and
    # read before it is written again.
    buffers = [np.empty(FRAME, np.uint8) for _ in range(8)]
    start = time.monotonic()
    for i in range(frames):
        write(buffers[i % 8], i)
        for q in qs:
            q.put(buffers[i % 8])
    return finish(back, ps, frames, start)


def finish(back, ps, frames, start):
    """Frames per second once every consumer has checked every frame;
    fails if one saw a torn frame."""
    bad = [back.get(timeout=120) for _ in ps]
    fps = frames / (time.monotonic() - start)
    for p in ps:
        p.join(60)
    assert bad == [0] * len(ps), f"torn frames: {bad}"
    return fps


# -- shmkit's Python streams -------------------------------------------------


def shm_next(sub, wait):
    if wait == "sleep":
        return sub.next()
    while True:
        try:
            return sub.next(block=False)
        except shmkit.Empty:
            pass


def shm_late(name, back, wait, frames):
    with shmkit.Subscriber(name, timeout=60) as sub:
        back.put("ready")
        late = []
        for _ in range(frames):
            with shm_next(sub, wait) as sample:
                seen = time.monotonic_ns()
                late.append(seen - marks(np.asarray(sample))[0])
    back.put(late)


def shm_latency(wait, frames, name):
    back = CTX.Queue()
    with shmkit.Publisher(name, FRAME, "u1", subscribers=1, lag=30.0) as pub:
        p = CTX.Process(target=shm_late, args=(name, back, wait, frames), daemon=True)
        p.start()
        assert back.get(timeout=60) == "ready"
        for _ in range(frames):
            start = time.monotonic()
            with pub.lend() as loan:
                view = np.asarray(loan)
                write(view, 0)
                stamp(view)
                del view  # a loan is published with no view left
            pace(start, wait)
    late = back.get(timeout=60)
    p.join(60)
    return [ns / 1e3 for ns in late]


def shm_check(name, back, frames):
    with shmkit.Subscriber(name, timeout=60) as sub:
        back.put("ready")
        bad = 0
        for i in range(frames):
            with sub.next() as sample:
                bad += marks(np.asarray(sample)) != (i, i)
    back.put(bad)


def shm_throughput(frames, name):
    back = CTX.Queue()
    with shmkit.Publisher(name, FRAME, "u1", subscribers=2, lag=30.0) as pub:
        ps = [CTX.Process(target=shm_check, args=(name, back, frames), daemon=True) for _ in range(2)]
        for p in ps:
            p.start()
        for _ in ps:
            assert back.get(timeout=60) == "ready"
        start = time.monotonic()
        for i in range(frames):
            with pub.lend() as loan:
                view = np.asarray(loan)
                write(view, i)
                del view
        return finish(back, ps, frames, start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--bulk", type=int, default=100)
    a = ap.parse_args()
    name = f"shmkit-bench-stream-py-{__import__('os').getpid()}"
    latency, throughput = {}, {}
    for wait in ("busy", "sleep"):
        latency[f"queue/{wait}"] = queue_latency(wait, a.frames)
        latency[f"shmkit-python/{wait}"] = shm_latency(wait, a.frames, f"{name}-{wait}")
    throughput["queue"] = [queue_throughput(a.bulk)]
    throughput["shmkit-python"] = [shm_throughput(a.bulk, f"{name}-bulk")]
    print(json.dumps({"latency": latency, "throughput": throughput}))


if __name__ == "__main__":
    main()
