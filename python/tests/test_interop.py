"""Python and Rust processes on the same segments: lifetimes both ways,
claims that conflict across languages, collections and queues made on
one side and used on the other."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import Peer, dev_shm, rust, run_python

import shmkit


def test_a_python_owner_and_a_rust_opener(name: str) -> None:
    a = shmkit.create_from(name, np.arange(32, dtype=np.float64).reshape(8, 4))
    assert rust(f"array-describe {name}") == ["<f8 [8, 4] owner=false"]
    assert rust(f"array-double {name}") == [f"sum {2 * sum(range(32))}"]
    assert name in dev_shm(), "the Rust opener's exit left the name"
    assert np.asarray(a)[7, 3] == 62
    a.close()
    assert name not in dev_shm()


def test_a_rust_owner_and_python_openers(name: str) -> None:
    peer = Peer(f"array-create {name}")
    assert peer.line() == "ready"
    a = shmkit.open(name)
    assert (a.shape, a.dtype, a.is_owner) == ((8, 4), np.float64, False)
    assert np.asarray(a)[2, 3] == 23
    # Python openers exiting, normally and by SIGKILL, never remove it.
    run_python(f"import shmkit, numpy; numpy.asarray(shmkit.open({name!r}))[0, 0] = -1")
    run_python(f"import shmkit, os; shmkit.open({name!r}); os.kill(os.getpid(), 9)", check=False)
    a.close()
    del a
    assert name in dev_shm() and np.asarray(shmkit.open(name))[0, 0] == -1
    peer.go()
    assert peer.finish() == 0
    assert name not in dev_shm(), "the Rust owner removed it"


def test_a_rust_claim_blocks_python_and_a_python_claim_blocks_rust(name: str) -> None:
    a = shmkit.create(name, (8, 4), "f8")
    peer = Peer(f"array-claim {name} 0 4")
    assert peer.line() == "claimed"
    with pytest.raises(shmkit.Busy, match="conflicts"):
        with a.rows(2, 6):
            pass
    with a.rows_mut(4, 8) as free:  # other rows are free
        free[:] = 1
    peer.go()
    assert peer.finish() == 0
    with a.rows_mut(0, 8):  # released when the peer let go
        pass
    with a.rows_mut(2, 3):
        assert rust(f"array-try-claim {name} 0 4") == ["busy"]
        assert rust(f"array-try-claim {name} 4 8") == ["claimed"]
    assert rust(f"array-try-claim {name} 0 4") == ["claimed"]
    a.close()


def test_a_rust_claim_dies_with_its_process(name: str) -> None:
    a = shmkit.create(name, (4, 4), "f8")
    peer = Peer(f"array-claim {name} 0 4")
    assert peer.line() == "claimed"
    peer.proc.kill()
    peer.proc.wait()
    with a.rows_mut(0, 4):  # a dead process's claims are void
        pass
    a.close()


def test_a_python_dict_is_a_rust_shm_map(name: str) -> None:
    d = shmkit.Dict.create(name, "i8", "f8", capacity=256)
    d[-1] = 9.0
    assert rust(f"dict-insert {name} 100") == ["len 101"]
    assert len(d) == 101 and d[42] == 21.0 and d[-1] == 9.0
    d.close()


def test_a_rust_map_opens_as_a_python_dict(name: str) -> None:
    peer = Peer(f"dict-create {name}")
    assert peer.line() == "ready"
    d = shmkit.Dict.open(name)
    assert (d.key_dtype, d.value_dtype, dict(d)) == ("<i8", "<f8", {1: 1.5})
    d[2] = 2.5
    peer.go()
    assert peer.finish() == 0
    assert name not in dev_shm()
    assert d[2] == 2.5, "the mapping outlives the name"


def test_a_rust_appender_killed_mid_append_leaves_a_hole(name: str) -> None:
    items = shmkit.List.create(name, "U8", capacity=8)
    items.append("before")
    rust(f"list-append {name}", fault="vec-push-claimed")
    items.append("after")
    assert len(items) == 3
    assert items.item(1) == ("hole", None)
    with pytest.raises(shmkit.Hole) as e:
        items[1]
    assert isinstance(e.value, LookupError)
    assert list(items) == ["before", "after"], "iteration skips holes"
    items.close()


def test_a_stopped_sender_holding_the_queue_lock_is_stalled_not_a_hang(name: str) -> None:
    q = shmkit.Queue.create(name, "i8", capacity=64)
    peer = Peer(f"queue-send {name} 20", fault="queue-send-locked")  # 100 ms in the lock per send
    assert peer.line() == "sending"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:  # our record out again at once: the peer's always fit
            q.put_nowait(-1)
            while q.get_nowait() != -1:
                pass
        except shmkit.Stalled:
            break
    else:
        pytest.fail("put_nowait never met the sender inside the queue's lock")
    assert peer.line() == "sent" and peer.finish() == 0
    q.close()
