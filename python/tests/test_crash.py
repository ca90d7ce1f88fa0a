"""Crashes leave nothing ``gc`` cannot remove: a Python owner SIGKILLed
at random moments while creating 256 MiB arrays; attachers never remove
and never see a half-built segment; Python's resource tracker never sees
a shmkit segment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from conftest import dev_shm, run_python, seeded, spawn_python, unique

import shmkit

BYTES = 256 << 20
FILL = 0x5A

CREATOR = """
    import sys, numpy as np, shmkit
    way, name = sys.argv[1], sys.argv[2]
    data = np.full({bytes}, {fill}, np.uint8) if way == "filled" else None
    print("go", flush=True)
    if way == "filled":
        a = shmkit.create_from(name, data)
    elif way == "zeroed":
        a = shmkit.create(name, {bytes}, "u1")
    else:
        a = shmkit.create_unique({bytes}, "u1")
    print("done", flush=True)
    sys.stdin.read()  # held until killed
""".format(bytes=BYTES, fill=FILL)


def leftovers(name: str, pid: int) -> list[str]:
    """Entries a creator made: under ``name``, or a unique name of its pid,
    or any entry that says it was made by ``pid``."""
    made_by = {s["name"] for s in shmkit.ls() if s.get("creator_pid") == pid}
    return sorted(made_by | {e for e in dev_shm() if e.startswith((name, f"shmkit-{pid}-"))})


def round_(way: str, name: str, delay: float | None) -> tuple[float, bool, int]:
    """One creator, killed ``delay`` s after it starts creating (or left to
    finish when None: how long a whole create takes)."""
    p = spawn_python(CREATOR, way, name)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "go"
    start = time.monotonic()
    if delay is None:
        assert p.stdout.readline().strip() == "done"
    else:
        time.sleep(delay)
    took = time.monotonic() - start
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    for f in (p.stdin, p.stdout, p.stderr):
        if f is not None:
            f.close()
    published = name in dev_shm() if way != "unique" else False
    if published:  # what an attacher would open is whole
        a = shmkit.open(name)
        v = np.asarray(a)
        assert v.nbytes == BYTES
        if way == "filled":
            assert v[:: BYTES // 4096].min() == FILL and v[-1] == FILL, "a half-filled segment was published"
        a.close()
    return took, published, p.pid


def test_an_owner_killed_while_creating_leaves_nothing_gc_cannot_remove() -> None:
    rng = seeded("python crash-create")
    name = unique("crash")
    ways = ["filled", "zeroed", "unique"]
    full = {}
    for way in ways:
        took, _, pid = round_(way, name, None)
        shmkit.gc(creator=pid)
        full[way] = took
    early = late = 0
    rounds = 50
    for r in range(rounds):
        way = ways[r % 3]
        # Spread from before the create to past its end; one round in five
        # well past the calibrated time (a loaded machine runs slower).
        delay = rng.uniform(1.5, 3) * full[way] if r % 5 == 4 else rng.uniform(0, 1.6) * full[way]
        _, published, pid = round_(way, name, delay)
        late += published
        early += not published
        removed = shmkit.gc(creator=pid)
        assert not leftovers(name, pid), f"round {r} ({way}, {delay * 1e3:.1f} ms): left after gc: {leftovers(name, pid)}"
        assert not published or name in removed
    times = {w: f"{t * 1e3:.0f} ms" for w, t in full.items()}
    print(f"{rounds} owners killed ({early} before the name appeared, {late} after; whole creates took {times})")
    assert early >= 5 and late >= 5, f"kill moments were not spread: {early} early, {late} late"


def test_an_attacher_exiting_never_removes_the_segment(name: str) -> None:
    a = shmkit.create(name, 1024, "u1")
    for how in ["b.close()", "del b", "pass", "os._exit(0)", "os.kill(os.getpid(), 9)", "raise SystemExit(3)"]:
        run_python(f"import os, shmkit\nb = shmkit.open({name!r})\n{how}\n", check=False)
        assert name in dev_shm(), f"an attacher ending with `{how}` removed it"
    a.close()
    assert name not in dev_shm()


def test_pythons_resource_tracker_never_sees_a_shmkit_segment(name: str, tmp_path: Path) -> None:
    script = tmp_path / "tracked.py"  # a file: spawn's children import their main module
    script.write_text(textwrap.dedent(
        f"""
        import multiprocessing, multiprocessing.resource_tracker as rt
        import numpy as np, shmkit

        seen = []
        def watch():
            real = rt.register
            rt.register = lambda n, kind: (seen.append((n, kind)), real(n, kind))[1]

        def work(a):
            watch()
            np.asarray(a)[:] += 1
            return [s for s in seen if s[1] == "shared_memory"]

        if __name__ == "__main__":
            watch()
            a = shmkit.create({name!r}, 100, "i8")
            with multiprocessing.get_context("spawn").Pool(2, initializer=watch) as pool:
                in_workers = pool.map(work, [a] * 8)
            assert np.asarray(a).sum() == 800, np.asarray(a).sum()
            assert shmkit.open({name!r}) is not None, "the workers' exit left it"
            print("tracked:", [s for s in seen if s[1] == "shared_memory"] + sum(in_workers, []))
            a.close()
        """
    ))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "tracked: []" in done.stdout, done.stdout
    assert "resource_tracker" not in done.stderr and "leaked" not in done.stderr, done.stderr
    assert name not in dev_shm()
