"""``shmkit.ProcessPool``: results, exceptions with the helper's
traceback, and every fault in a real process: a helper killed mid-task
(at random moments, under load), a task past its deadline, a running
task cancelled, helpers that cannot start, a forked child, a killed
coordinator, Ctrl-C in ``result()``."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import pickle
import signal
import struct
import time
from pathlib import Path

import pool_tasks as t
import pytest
from conftest import dev_shm, run_python, seeded, spawn_python, tier

import shmkit


@pytest.fixture
def pool() -> cf.Executor:
    with shmkit.ProcessPool(2, timeout=20) as p:
        yield p


def test_results_maps_and_the_futures_protocol(pool: shmkit.ProcessPool) -> None:
    assert pool.submit(t.square, 7).result(timeout=30) == 49
    assert pool.submit(t.add, 1, 2, z=3).result(timeout=30) == 6
    assert list(pool.map(t.square, range(20))) == [i * i for i in range(20)]
    assert list(pool.map(t.add, range(5), range(5), chunksize=2)) == [2 * i for i in range(5)]
    futures = [pool.submit(t.sleep, s) for s in (0.3, 0.01)]
    first = next(cf.as_completed(futures, timeout=30))
    assert first is futures[1], "as_completed yields in finishing order"
    done, _ = cf.wait(futures, timeout=30)
    assert done == set(futures)

    async def awaited() -> list[int]:
        loop = asyncio.get_running_loop()
        a = asyncio.wrap_future(pool.submit(t.square, 3))
        b = loop.run_in_executor(pool, t.square, 4)
        return list(await asyncio.gather(a, b))

    assert asyncio.run(awaited()) == [9, 16]


def test_an_exception_carries_the_helpers_traceback(pool: shmkit.ProcessPool) -> None:
    with pytest.raises(ValueError, match="no good") as e:
        pool.submit(t.fail, "no good").result(timeout=30)
    assert isinstance(e.value.__cause__, shmkit.RemoteTraceback)
    assert "in fail" in str(e.value.__cause__), "the helper-side frame is shown"
    assert pool.submit(t.square, 2).result(timeout=30) == 4


def test_what_does_not_pickle_fails_its_own_task_alone(pool: shmkit.ProcessPool) -> None:
    with pytest.raises(TypeError, match="cloudpickle"):
        pool.submit(lambda: 1).result(timeout=30)
    with pytest.raises(TypeError, match="arguments cannot be pickled"):
        pool.submit(t.square, os.fdopen(os.dup(0))).result(timeout=30)
    with pytest.raises((TypeError, pickle.PicklingError)):
        pool.submit(t.unpicklable_result).result(timeout=30)
    assert pool.submit(t.square, 5).result(timeout=30) == 25


def test_an_argument_over_the_message_limit_says_to_share_an_array(pool: shmkit.ProcessPool) -> None:
    with pytest.raises(shmkit.InvalidArgument, match="shmkit arrays"):
        pool.submit(t.square, b"x" * (257 << 20)).result(timeout=30)
    assert len(pool.submit(t.big_result, 8 << 20).result(timeout=30)) == 8 << 20


def test_numpy_arrays_travel_out_of_band_writable_and_aligned(pool: shmkit.ProcessPool) -> None:
    import numpy as np

    cases = [
        np.arange(10, dtype=np.int32),
        np.arange(3 * (16 << 20) // 8, dtype=np.float64).reshape(3, -1),  # 48 MiB
        np.asfortranarray(np.arange(12, dtype=np.uint8).reshape(3, 4)),
        np.arange(20, dtype=np.int16)[::3],  # not contiguous: pickled in band
        np.zeros((0, 4)),
    ]
    for a in cases:
        out, base, writable, aligned = pool.submit(t.add_one_in_place, a).result(timeout=60)
        np.testing.assert_array_equal(out, a + 1)
        assert out.dtype == a.dtype and out.shape == a.shape
        assert writable and aligned, "an array arrives as writable and aligned as one pickled in band"
        assert out.flags.writeable and out.flags.aligned
        if a.flags.c_contiguous and a.size:
            assert base == "memoryview", f"a contiguous array arrives out of band, in the message ({base})"
    many = pool.submit(t.add_one_in_place, np.ones(5)).result(timeout=30)
    assert many[0].sum() == 10


def ours() -> set[str]:
    """This process's segments (named after its pid) in /dev/shm: other
    tests' processes may make and remove theirs meanwhile."""
    return {n for n in dev_shm() if n.startswith(f"shmkit-{os.getpid()}-")}


def test_big_messages_travel_in_segments_that_are_removed_after_use(pool: shmkit.ProcessPool) -> None:
    import numpy as np

    pool.submit(t.square, 1).result(timeout=30)  # the pool's own segment made
    before = ours()
    a = np.arange(2 << 20, dtype=np.float64)  # 16 MiB: over the 1 MiB a message takes through the rings
    for _ in range(3):
        out, base, writable, _ = pool.submit(t.add_one_in_place, a).result(timeout=60)
        np.testing.assert_array_equal(out, a + 1)
        assert base == "memoryview" and writable, "read in place from the argument's segment"
        assert out.flags.writeable
        assert ours() <= before, "the argument's and the result's segments are gone once the result is in"
    assert len(pool.submit(t.big_result, 8 << 20).result(timeout=30)) == 8 << 20
    assert ours() <= before
    # A queued task cancelled: its argument's segment goes with it.
    busy = [pool.submit(t.sleep, 1.0) for _ in range(2)]
    queued = pool.submit(t.add_one_in_place, a)
    assert len(ours() - before) == 1, "the queued argument's segment"
    assert queued.cancel()
    assert ours() <= before
    for f in busy:
        f.result(timeout=30)
    del out


def test_a_rerun_reads_a_big_argument_as_it_was_sent(tmp_path: Path) -> None:
    import numpy as np

    a = np.zeros(2 << 20, dtype=np.uint8)  # 2 MiB: sent in a segment, read in place
    marker = str(tmp_path / "first-attempt")
    with shmkit.ProcessPool(1, retries=1, timeout=60) as pool:
        out = pool.submit(t.add_one_then_die_once, a, marker).result(timeout=60)
    assert os.path.exists(marker), "the first attempt died"
    assert int(out.max()) == 1, "the rerun saw the argument as sent, not as the dead attempt left it"


def test_a_corrupt_message_is_an_error_not_a_crash() -> None:
    from shmkit import _worker

    good = _worker.dumps([pickle.PickleBuffer(bytearray(b"abc")), pickle.PickleBuffer(bytearray(100))])
    assert isinstance(good, list), "PickleBuffers go out of band"
    message = b"".join(good)
    assert [bytes(b) for b in _worker.loads(bytearray(message))] == [b"abc", bytes(100)]
    for bad in (message[:-1], message + b"x", b"B\xff\xff\xff\xff" + message[5:], b"B", b"B\x01\x00\x00\x00"):
        with pytest.raises((pickle.UnpicklingError, struct.error, ValueError)):
            _worker.loads(bytearray(bad))


def test_a_killed_helper_fails_only_its_task(pool: shmkit.ProcessPool) -> None:
    others = [pool.submit(t.sleep, 0.2) for _ in range(4)]
    with pytest.raises(shmkit.WorkerDied) as e:
        pool.submit(t.die).result(timeout=30)
    assert e.value.signal == signal.SIGKILL
    assert [f.result(timeout=30) for f in others] == [0.2] * 4
    assert pool.submit(t.square, 3).result(timeout=30) == 9, "a new helper took its place"


def test_helpers_killed_at_random_moments_under_load_fail_at_most_their_tasks() -> None:
    rng = seeded("pool kills")
    kills = tier(8, 40)
    with shmkit.ProcessPool(2, timeout=60) as pool:
        futures = [pool.submit(t.sleep, rng.choice((0.0, 0.001, 0.01))) for _ in range(40 * kills)]
        done_kills = 0
        for _ in range(kills):
            time.sleep(rng.uniform(0.0, 0.05))
            pids = pool.helper_pids()
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    done_kills += 1
                except ProcessLookupError:
                    pass
        died = 0
        for f in futures:
            try:
                f.result(timeout=60)
            except shmkit.WorkerDied:
                died += 1
        assert died <= done_kills, f"{died} tasks failed for {done_kills} kills"
        assert pool.submit(t.square, 6).result(timeout=30) == 36


def test_helpers_killed_while_big_messages_travel_leave_nothing() -> None:
    import numpy as np

    rng = seeded("pool kills, big messages")
    kills = tier(6, 30)
    before = ours()
    a = np.arange(2 << 20, dtype=np.uint8)  # 2 MiB each way: argument and result in segments
    killed: list[int] = []
    with shmkit.ProcessPool(2, timeout=60) as pool:
        futures = [pool.submit(t.add_one_in_place, a) for _ in range(10 * kills)]
        for _ in range(kills):
            time.sleep(rng.uniform(0.0, 0.05))
            if pids := pool.helper_pids():
                victim = rng.choice(pids)
                try:
                    os.kill(victim, signal.SIGKILL)
                    killed.append(victim)
                except ProcessLookupError:
                    pass
        died = 0
        for f in futures:
            try:
                np.testing.assert_array_equal(f.result(timeout=60)[0], a + 1)
            except shmkit.WorkerDied:
                died += 1
        assert died <= len(killed), f"{died} tasks failed for {len(killed)} kills"
    # Arguments' segments are the coordinator's, results take the rings.
    assert ours() <= before, "nothing left behind"


def test_a_task_past_its_deadline_is_killed_and_the_rest_go_on() -> None:
    with shmkit.ProcessPool(2, timeout=0.5) as pool:
        slow, quick = pool.submit(t.sleep, 30), pool.submit(t.sleep, 0.01)
        with pytest.raises(shmkit.TaskTimeout) as e:
            slow.result(timeout=30)
        assert isinstance(e.value, TimeoutError)
        assert quick.result(timeout=30) == 0.01
        with pytest.raises(cf.TimeoutError):
            pool.submit(t.sleep, 0.3).result(timeout=0.01)  # the caller's wait, as in the stdlib


def test_cancel_stops_queued_and_running_tasks(name: str) -> None:
    ran = shmkit.Counter.create(name)
    with shmkit.ProcessPool(1) as pool:
        running = pool.submit(t.count_then_sleep, ran, 30)
        queued = pool.submit(t.count_then_sleep, ran, 30)
        deadline = time.monotonic() + 30
        while ran.value == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = pool.helper_pids()
        t0 = time.monotonic()
        assert running.cancel() and running.cancelled()
        assert queued.cancel() and queued.cancelled()
        assert pool.submit(t.square, 4).result(timeout=30) == 16
        assert time.monotonic() - t0 < 10, "the running task was stopped, not waited for"
        assert pool.helper_pids() != before, "its helper was killed and replaced"
        finished = pool.submit(t.square, 2)
        assert finished.result(timeout=30) == 4 and not finished.cancel()
    assert ran.value == 1, "the queued task never ran"
    ran.close()


def test_an_initializer_runs_in_every_helper_and_its_failure_is_reported() -> None:
    with shmkit.ProcessPool(2, initializer=t.remember, initargs=("ready",), max_tasks_per_child=1) as pool:
        assert [pool.submit(t.remembered).result(timeout=30) for _ in range(4)] == ["ready"] * 4
    with shmkit.ProcessPool(1, initializer=t.refuse_to_start) as pool:
        with pytest.raises(shmkit.WorkerStartFailed, match="refuses"):
            pool.submit(t.square, 2).result(timeout=30)


def test_max_tasks_per_child_replaces_helpers() -> None:
    with shmkit.ProcessPool(1, max_tasks_per_child=2) as pool:
        pids = [pool.submit(t.pid).result(timeout=30) for _ in range(6)]
    assert len(set(pids)) == 3, pids


def test_a_main_script_that_raises_on_import_fails_submits_until_fixed(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.write_text("")
    script = tmp_path / "main.py"
    script.write_text(
        f"""
import os, shmkit
if __name__ == "__mp_main__" and os.path.exists({str(flag)!r}):
    raise RuntimeError("this script is broken on import")

def cube(x):
    return x ** 3

if __name__ == "__main__":
    with shmkit.ProcessPool(1) as pool:
        try:
            pool.submit(cube, 2).result(timeout=60)
        except shmkit.WorkerStartFailed as e:
            print("failed:", "broken on import" in str(e))
        os.remove({str(flag)!r})
        print("then:", pool.submit(cube, 2).result(timeout=60))
"""
    )
    out = run_python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')", timeout=120)
    assert out.stdout.split() == ["failed:", "True", "then:", "8"], out.stdout + out.stderr


def test_functions_of_the_main_script_are_found(tmp_path: Path) -> None:
    script = tmp_path / "tripler.py"
    script.write_text(
        """
import shmkit

def triple(x):
    return 3 * x

if __name__ == "__main__":
    with shmkit.ProcessPool(2) as pool:
        print(list(pool.map(triple, range(4))))
"""
    )
    out = run_python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')")
    assert out.stdout.strip() == "[0, 3, 6, 9]"
    # Without a file to import them from (`python -c`, a notebook): a clear error at once.
    out = run_python(
        """
        import shmkit
        def triple(x):
            return 3 * x
        with shmkit.ProcessPool(1) as pool:
            try:
                pool.submit(triple, 1).result(timeout=60)
            except TypeError as e:
                print("cloudpickle" in str(e) and "python -c" in str(e))
        """
    )
    assert out.stdout.strip() == "True", out.stdout + out.stderr


def test_a_forked_child_may_not_use_its_parents_pool(pool: shmkit.ProcessPool) -> None:
    assert pool.submit(t.square, 1).result(timeout=30) == 1
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            pool.submit(t.square, 2)
            os._exit(1)
        except shmkit.Inherited:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pool.submit(t.square, 3).result(timeout=30) == 9


def test_a_killed_coordinator_leaves_no_helper() -> None:
    p = spawn_python(
        """
        import time, shmkit, pool_tasks
        pool = shmkit.ProcessPool(2)
        pool.submit(pool_tasks.sleep, 60)
        pool.submit(pool_tasks.square, 1).result(timeout=60)
        print(*pool.helper_pids(), flush=True)
        time.sleep(60)
        """,
        cwd=str(Path(__file__).parent),
    )
    assert p.stdout is not None
    pids = [int(x) for x in p.stdout.readline().split()]
    assert len(pids) == 2
    p.kill()
    p.communicate()
    deadline = time.monotonic() + 10
    while any(_alive(x) for x in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(x) for x in pids), "helpers outlived their coordinator"
    assert len(shmkit.gc(creator=p.pid)) == 1, "the killed coordinator's pool segment is gc's"


def test_ctrl_c_in_result_is_answered_at_once() -> None:
    p = spawn_python(
        """
        import time, shmkit, pool_tasks
        with shmkit.ProcessPool(1) as pool:
            f = pool.submit(pool_tasks.sleep, 60)
            pool.submit(pool_tasks.square, 1)
            print("waiting", flush=True)
            try:
                f.result()
            except KeyboardInterrupt:
                print("interrupted", time.monotonic(), flush=True)
            f.cancel()
        """,
        cwd=str(Path(__file__).parent),
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "waiting"
    time.sleep(0.2)
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    word, at = p.stdout.readline().split()
    assert word == "interrupted" and float(at) - sent < 0.1
    p.communicate(timeout=30)
    assert p.returncode == 0


def test_a_shut_down_pool_refuses_new_work_and_stops_its_helpers() -> None:
    pool = shmkit.ProcessPool(2)
    assert pool.submit(t.square, 2).result(timeout=30) == 4
    pids = pool.helper_pids()
    slow = pool.submit(t.sleep, 0.2)
    pool.shutdown(wait=True)
    assert slow.result(timeout=0) == 0.2, "shutdown waits for running tasks"
    with pytest.raises(RuntimeError):
        pool.submit(t.square, 1)
    assert not any(_alive(x) for x in pids)
    cancelling = shmkit.ProcessPool(1)
    futures = [cancelling.submit(t.sleep, 30) for _ in range(3)]
    cancelling.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in futures)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):  # reaped between open and read
        return False


def test_a_main_script_may_use_shmkit_as_it_is_imported_but_not_start_pools(tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    script.write_text(
        """
import os, shmkit
COUNTER = shmkit.Counter.open(os.environ["SHMKIT_TEST_COUNTER"])  # at import, in helpers too
if __name__ == "__mp_main__" and os.environ.get("SHMKIT_TEST_NESTED"):
    shmkit.ProcessPool(1).submit(abs, 1).result()  # no __main__ guard: refused

def bump(n):
    print("bumped", n)  # reaches the output, though the helper is then replaced
    COUNTER.add(n)
    return COUNTER.value

if __name__ == "__main__":
    with shmkit.ProcessPool(1, max_tasks_per_child=1) as pool:
        print(pool.submit(bump, 5).result(timeout=60) >= 5, flush=True)
    os.environ["SHMKIT_TEST_NESTED"] = "1"
    with shmkit.ProcessPool(1) as pool:
        try:
            pool.submit(bump, 1).result(timeout=60)
        except shmkit.WorkerStartFailed as e:
            print("nested:", "__main__" in str(e))
"""
    )
    counter = shmkit.Counter.create_unique()
    try:
        out = run_python(
            f"import os, runpy; os.environ['SHMKIT_TEST_COUNTER'] = {counter.name!r}; "
            f"runpy.run_path({str(script)!r}, run_name='__main__')",
            timeout=120,
        )
    finally:
        counter.close()
    assert out.stdout.split() == ["bumped", "5", "True", "nested:", "True"], out.stdout + out.stderr


def test_a_forked_child_leaves_its_parents_helpers_alone(pool: shmkit.ProcessPool) -> None:
    assert pool.submit(t.square, 1).result(timeout=30) == 1
    pids = pool.helper_pids()
    running = pool.submit(t.sleep, 1.0)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child: shuts the copy down, cancels, exits)
        try:
            running.cancel()
            pool.shutdown(wait=True)
            pool.terminate()  # its native pool dropped here: must cancel nothing of the parent's
            import gc

            gc.collect()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert all(_alive(x) for x in pids), "the child killed its parent's helpers"
    assert running.result(timeout=30) == 1.0, "the child's cancel reached the parent's task"
