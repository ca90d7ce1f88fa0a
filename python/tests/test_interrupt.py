"""Ctrl-C (SIGINT) ends every blocking call with ``KeyboardInterrupt``
within 100 ms: the waits run in 50 ms slices with the GIL released,
Python's signal handlers running between them."""

from __future__ import annotations

import os
import signal
import statistics
import time

import pytest
from collections.abc import Iterator

from conftest import spawn_python, unique

import shmkit

# What each child blocks in, against state the test holds: (setup, call).
BLOCKING = {
    "Lock.acquire": ("lock = shmkit.Lock.open(name)", "lock.acquire()"),
    "RWLock.write": ("rw = shmkit.RWLock.open(name + '-rw')", "rw.write().__enter__()"),
    "Event.wait": ("ev = shmkit.Event.open(name + '-ev')", "ev.wait()"),
    "Barrier.wait": ("b = shmkit.Barrier.open(name + '-b')", "b.wait()"),
    "Queue.get": ("q = shmkit.Queue.open(name + '-e')", "q.get()"),
    "Queue.put": ("q = shmkit.Queue.open(name + '-f')", "q.put(1)"),
    "Subscriber.next": ("s = shmkit.Subscriber(name + '-s')", "s.next()"),
    "Subscriber.latest": ("s = shmkit.Subscriber(name + '-s')", "s.latest()"),
}

CHILD = """
    import sys, time, shmkit
    name = sys.argv[1]
    {setup}
    print("blocking", flush=True)
    try:
        {call}
        print("returned", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


@pytest.fixture(scope="module")
def held() -> Iterator[str]:
    """Every primitive, in the state that blocks a caller."""
    name = unique("int")
    lock, rw, ev = shmkit.Lock.create(name), shmkit.RWLock.create(name + "-rw"), shmkit.Event.create(name + "-ev")
    b = shmkit.Barrier.create(name + "-b", 2)
    empty, full = shmkit.Queue.create(name + "-e", "u1", 1), shmkit.Queue.create(name + "-f", "u1", 1)
    full.put(0)
    # A live stream with nothing published: its readers wait.
    stream = shmkit.Publisher(name + "-s", 4, "u1", slots=10, subscribers=8, holds=1)
    lock.acquire()
    reading = rw.read()
    reading.__enter__()
    yield name
    reading.__exit__(None, None, None)
    lock.release()
    for h in (lock, rw, ev, b, empty, full, stream):
        h.close()


def latency(name: str, setup: str, call: str) -> float:
    """Seconds from SIGINT to the child saying it was interrupted."""
    p = spawn_python(CHILD.replace("{setup}", setup).replace("{call}", call), name)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "blocking"
        time.sleep(0.2)  # inside the call by now
        start = time.monotonic()
        os.kill(p.pid, signal.SIGINT)
        line = p.stdout.readline().strip()
        took = time.monotonic() - start
        assert line == "interrupted", f"{call}: {line!r} {p.stderr.read() if p.stderr else ''}"
        return took
    finally:
        p.kill()
        p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                f.close()


@pytest.mark.parametrize("kind", list(BLOCKING))
def test_ctrl_c_ends_a_blocking_call(held: str, kind: str) -> None:
    setup, call = BLOCKING[kind]
    times = [latency(held, setup, call) for _ in range(3)]
    print(f"{kind}: Ctrl-C answered in {', '.join(f'{t * 1e3:.0f}' for t in times)} ms")
    assert max(times) < 1.0, "never a hang"
    assert statistics.median(times) <= 0.100, f"{kind}: Ctrl-C took {times}"
