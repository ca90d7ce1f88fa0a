"""The seeds rewritten with shmkit (``python/examples``) run as written
and print what the originals print, leaving nothing in ``/dev/shm``."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT, dev_shm

import shmkit


def run(example: str) -> str:
    before = dev_shm()
    done = subprocess.run([sys.executable, str(ROOT / "python/examples" / example)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not {n for n in dev_shm() - before if n.startswith("shmkit")}, "the example left a segment"
    return done.stdout


def test_double_in_place() -> None:
    assert run("double_in_place.py") == "Result: [ 2.  4.  6.  8. 10.]\n"


def test_manager() -> None:
    out = run("manager.py").splitlines()
    assert out[0] == "Dict: " + str({i: 2 * i for i in range(10)})
    assert out[1] == "List: " + str([f"processed_{i}" for i in range(10)])


def test_pool_basic() -> None:
    out = run("pool_basic.py").split()
    assert out[0] == "Sequential:" and out[2] == "Parallel:", out


def test_executor_basic_kills_the_stuck_task_at_its_deadline() -> None:
    out = run("executor_basic.py").splitlines()
    assert out[0] == "Item 13 timed out"
    n, _, _, seconds = out[1].split()
    assert n == "19" and float(seconds.rstrip("s")) < 30, "the stuck task was not waited for"


def test_chunked_processing() -> None:
    assert run("chunked_processing.py") == "10000 items in 20 chunks\n"


def test_error_handling_survives_a_dying_worker() -> None:
    out = run("error_handling.py")
    assert out.startswith("18 succeeded") and "(7, 'item 7 is bad data')" in out and "(13, 'the helper" in out, out


def test_queue_pattern_ends_its_stream_without_poison_pills() -> None:
    assert run("queue_pattern.py").startswith("1000 results from")


def test_basketball_simulation() -> None:
    out = run("basketball.py").split()
    assert out[:3] == ["Gonzaga", "beats", "Baylor"] and 40.0 < float(out[4].rstrip("%")) < 90.0, out


def test_maxtasksperchild_recycles_leaking_helpers() -> None:
    out = run("maxtasksperchild.py").split()
    tasks, helpers, most = int(out[0]), int(out[2]), int(out[6])
    assert tasks == 1000 and helpers >= 10 and most <= 100, out


@pytest.mark.parametrize("readme", ["README.md", "python/README.md"])
def test_the_readme_snippet_runs_as_written(readme: str, tmp_path: object) -> None:
    snippets = re.findall(r"```python\n(.*?)```", (ROOT / readme).read_text(), re.S)
    assert snippets, f"{readme} has no Python snippet"
    for i, snippet in enumerate(snippets):
        script = tmp_path / f"snippet{i}.py"  # type: ignore[operator]
        script.write_text(snippet)
        before = dev_shm()
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip(), f"snippet {i} printed nothing"
        assert not {n for n in dev_shm() - before if n.startswith("shmkit")}, f"snippet {i} left a segment"


def test_stream_viewer_waits_for_the_camera_and_shows_the_newest_frames(name: str) -> None:
    """The viewer, started before any camera, waits for one, then shows
    the newest frames (a camera here in this process, with frames like the
    Rust example's) until it has shown the number asked for."""
    import numpy as np

    from conftest import spawn_python

    viewer = spawn_python(
        "import runpy, sys; sys.argv = ['viewer', '--name', sys.argv[1], '--frames', '4', '--every', '0.05']; "
        f"runpy.run_path({str(ROOT / 'python/examples/stream_viewer.py')!r}, run_name='__main__')",
        name,
    )
    try:
        frame = np.zeros((1080, 1920, 3), np.uint8)
        with shmkit.Publisher(name, frame.shape, "u1", policy="overwrite") as camera:
            for i in range(1, 30):
                frame[...] = i
                camera.send(frame)
                if viewer.poll() is not None:
                    break
                __import__("time").sleep(0.02)
        out, err = viewer.communicate(timeout=60)
    finally:
        viewer.kill()
    assert viewer.returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("viewer: frame")]
    assert len(lines) >= 1 and "watching" in out, out
    seqs = [int(line.split()[2]) for line in lines]
    assert seqs == sorted(seqs), "the newest, frame after frame"
    for line in lines:  # frame N is filled with N in every channel
        n = int(line.split()[2])
        assert line.endswith(f"{n:.1f} {n:.1f} {n:.1f}"), line
