"""Streams from Python: numpy views of samples and loans that can never
read or write a reused slot, a Rust producer feeding a Python consumer and
back, publishers and subscribers in separate processes, the end and the
death of a publisher, misuse."""

from __future__ import annotations

import signal

import numpy as np
import pytest
from conftest import Peer, spawn_python

import shmkit


def test_a_python_publisher_and_subscriber_in_order_and_the_newest(name: str) -> None:
    with shmkit.Publisher(name, (3, 4), "f4", slots=6, policy="overwrite") as pub:
        sub = shmkit.Subscriber(name)
        viewer = shmkit.Subscriber(name)
        assert (sub.shape, sub.dtype) == ((3, 4), "<f4")
        for i in range(1, 4):
            loan = pub.loan()
            loan[...] = i
            assert pub.publish(loan) == i
        for i in range(1, 4):
            with sub.next() as s:
                frame = np.asarray(s)
                assert frame.shape == (3, 4) and frame.dtype == np.float32
                assert not frame.flags.writeable, "a sample is read-only"
                assert (frame == i).all()
                del frame
        s = viewer.latest()
        assert (s.seq, s.missed, float(np.asarray(s)[0, 0])) == (3, 0, 3.0)
        s.release()
        assert pub.send(np.full((3, 4), 7.0)) == 4
        assert float(np.asarray(sub.next()).sum()) == 7.0 * 12
    with pytest.raises(shmkit.ShutDown):
        sub.next(timeout=5)
    assert [s.seq for s in viewer] == [4], "next goes on after the newest it saw, then the end stops iteration"


def test_a_view_keeps_its_sample_held_and_release_with_a_view_alive_is_loud(name: str) -> None:
    pub = shmkit.Publisher(name, 8, "u1", slots=4, policy="overwrite", subscribers=1, holds=1)
    sub = shmkit.Subscriber(name)
    pub.send(np.full(8, 1, np.uint8))
    kept = np.asarray(sub.next())  # the Sample object is gone; the view keeps its slot held
    for i in range(2, 30):
        pub.send(np.full(8, i, np.uint8))  # round the ring many times
    assert (kept == 1).all(), "the slot a live view reads was never reused"
    with pytest.raises(shmkit.LimitReached):
        sub.next(block=False)  # its one hold is the view's
    del kept
    s = sub.latest()
    view = np.asarray(s)
    with pytest.raises(BufferError, match="still alive"):
        s.release()
    del view
    s.release()
    s.release()  # harmless twice
    with pytest.raises(BufferError):
        np.asarray(s)  # released: no more views
    pub.close()


def test_a_view_of_a_loan_blocks_its_publish(name: str) -> None:
    with shmkit.Publisher(name, (2, 2), "i8", slots=4, subscribers=1) as pub:
        loan = pub.loan()
        view = np.asarray(loan)
        view[:] = 5
        with pytest.raises(BufferError, match="still alive"):
            pub.publish(loan)
        del view
        assert pub.publish(loan) == 1
        with pytest.raises(shmkit.InvalidArgument, match="published or discarded already"):
            pub.publish(loan)
        with pytest.raises(BufferError):
            np.asarray(loan)  # published: no writer is left


def test_a_rust_producer_feeds_a_python_consumer(name: str) -> None:
    peer = Peer(f"stream-publish {name} 300")
    assert peer.line() == "ready"
    sub = shmkit.Subscriber(name, timeout=30)
    peer.go()
    seen = []
    for sample in sub:
        a = np.asarray(sample)
        assert a.shape == (4, 5) and a.dtype == np.uint16
        assert (a == sample.seq % 65536).all(), "whole"
        seen.append(sample.seq)
        del a
    assert seen == list(range(1, 301)), "every sample in order: a Block stream"
    assert peer.line() == "published"
    assert peer.finish() == 0


def test_a_python_producer_feeds_a_rust_consumer(name: str) -> None:
    pub = shmkit.Publisher(name, (4, 5), "u2", slots=8, policy="block", lag=30)
    peer = Peer(f"stream-read {name}")
    assert peer.line() == "ready"
    for i in range(1, 201):
        loan = pub.loan(timeout=30)
        loan[...] = i
        pub.publish(loan)
    pub.close()
    lines = [peer.line() for _ in range(201)]
    assert lines[:-1] == [f"{i} true" for i in range(1, 201)]
    assert lines[-1] == "end"
    assert peer.finish() == 0


def test_a_killed_python_publisher_ends_its_subscribers_with_publisher_died(name: str) -> None:
    code = f"""
import numpy as np, shmkit, sys, time
pub = shmkit.Publisher({name!r}, 16, "u1", slots=4, policy="overwrite")
sys.stdout.write("ready\\n"); sys.stdout.flush()
i = 0
while True:
    i += 1
    pub.send(np.full(16, i % 256, np.uint8))
    time.sleep(0.001)
"""
    proc = spawn_python(code)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    sub = shmkit.Subscriber(name)
    got = [sub.next(timeout=30).seq for _ in range(5)]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with pytest.raises(shmkit.PublisherDied):
        while True:
            with sub.next(timeout=30) as s:
                assert len(set(np.asarray(s).tolist())) == 1, "never a torn sample"
    assert got == sorted(got)
    # A new publisher takes the dead one's name; its numbers go on.
    with shmkit.Publisher(name, 16, "u1", slots=4, policy="overwrite") as again:
        fresh = shmkit.Subscriber(name)
        seq = again.send(np.zeros(16, np.uint8))
        assert seq > got[-1] and fresh.next(timeout=5).seq == seq
    shmkit.gc(prefix=name)


def test_misuse_gets_clear_errors(name: str) -> None:
    with pytest.raises(shmkit.UnsupportedDtype):
        shmkit.Publisher(name, 4, "c16")
    with pytest.raises(shmkit.InvalidArgument, match="policy"):
        shmkit.Publisher(name, 4, "u1", policy="sometimes")
    with pytest.raises(shmkit.InvalidArgument, match="needs"):
        shmkit.Publisher(name, 4, "u1", slots=3, subscribers=4)
    with pytest.raises(shmkit.InvalidArgument, match="elements"):
        shmkit.Publisher(name, (0, 4), "u1")
    with pytest.raises(ValueError):
        shmkit.Publisher(name, 4, "u1", lag=-1)
    with pytest.raises(shmkit.NotFound):
        shmkit.Subscriber(name)
    with pytest.raises(shmkit.NotFound):
        shmkit.Subscriber(name, timeout=0.05)
    pub = shmkit.Publisher(name, 4, "u1", slots=4, subscribers=1, holds=1)
    with pytest.raises(shmkit.AlreadyExists):
        shmkit.Publisher(name, 4, "u1")
    sub = shmkit.Subscriber(name)
    with pytest.raises(shmkit.LimitReached):
        shmkit.Subscriber(name)  # one place
    with pytest.raises(shmkit.Empty):
        sub.next(block=False)
    with pytest.raises(shmkit.Empty):
        sub.next(timeout=0.02)
    with pytest.raises(shmkit.WrongType):
        shmkit.open(name)  # a stream, not an array
    other = shmkit.Publisher(name + "-b", 4, "u1", slots=4, subscribers=1)
    with pytest.raises(shmkit.InvalidArgument, match="another publisher"):
        pub.publish(other.loan())
    pub.loan(), pub.loan()  # dropped at once: their slots go back
    pub.close()
    with pytest.raises(shmkit.Closed):
        pub.loan()
    other.close()


def test_numpy_copies_are_copies_and_a_loop_keeping_its_view_works(name: str) -> None:
    with shmkit.Publisher(name, 6, "i4", slots=8, policy="overwrite") as pub:
        sub = shmkit.Subscriber(name)
        for i in range(5):
            pub.send(np.full(6, i, np.int32))
        s = sub.next()
        copy = np.array(s)
        assert copy.flags.writeable and copy.flags.owndata, "numpy.array(sample) is a copy"
        s.release()  # the copy keeps nothing
        copy[:] = 9
        seen = []
        for s in sub:  # `a` of the last pass still lives as the next is taken: two holds
            a = np.asarray(s)
            seen.append(int(a[0]))
            if len(seen) == 3:
                break
        assert seen == [1, 2, 3]
        del a


def test_lend_publishes_at_the_end_of_its_block_and_discards_on_error(name: str) -> None:
    with shmkit.Publisher(name, 3, "f8", slots=4, subscribers=1, holds=1) as pub:
        sub = shmkit.Subscriber(name)
        with pub.lend() as loan:
            loan[...] = [1.0, 2.0, 3.0]
        assert np.asarray(sub.next()).tolist() == [1.0, 2.0, 3.0]
        with pytest.raises(ZeroDivisionError), pub.lend() as loan:
            1 / 0
        with pytest.raises(ValueError):
            pub.send(np.zeros(7))  # a wrong shape: the loan goes back, not to the traceback
        loan = pub.loan()  # the one spare slot is free again
        loan.discard()
        loan.discard()
        with pytest.raises(BufferError):
            np.asarray(loan)
        assert pub.send([4.0, 5.0, 6.0]) == 2, "discarded loans take no number"


def test_a_forked_child_gets_no_view_of_its_parents_samples_and_loans(name: str) -> None:
    import os

    with shmkit.Publisher(name, 4, "u1", slots=6, subscribers=1) as pub:
        sub = shmkit.Subscriber(name)
        pub.send(np.arange(4, dtype=np.uint8))
        sample, loan = sub.next(), pub.loan()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            code = 0
            for obj in (sample, loan):
                try:
                    np.asarray(obj)
                    code = 1
                except BufferError:
                    pass
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child got a view of its parent's slot"
        assert np.asarray(sample).tolist() == [0, 1, 2, 3]
        sample.release()
        loan.discard()
    sub.close()
    with pytest.raises(shmkit.Closed):
        sub.next()
