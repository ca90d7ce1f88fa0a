"""What is in ``/dev/shm`` and removing what crashes left, from Python
(``shmkit.ls``, ``inspect``, ``gc``, ``remove``, ``unlink``, ``doctor``)
and from ``python -m shmkit``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import dev_shm, run_python, unique

import shmkit


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shmkit", *args], capture_output=True, text=True, timeout=60)


def orphan(tag: str) -> tuple[str, int]:
    """A segment whose creator is gone (it was SIGKILLed): garbage."""
    name = unique(tag)
    code = f"import os, shmkit; a = shmkit.create({name!r}, 8); print(os.getpid(), flush=True); os.kill(os.getpid(), 9)"
    done = run_python(code, check=False)
    return name, int(done.stdout.strip())


def test_ls_and_inspect_describe_segments(name: str) -> None:
    a = shmkit.create(name, (2, 3), "i2")
    d = shmkit.Dict.create(name + "-d", "i8", "U4", 16)
    rows = {s["name"]: s for s in shmkit.ls()}
    arr, dic = rows[name], rows[name + "-d"]
    assert (arr["kind"], arr["dtype"], arr["shape"], arr["garbage"]) == ("array", "<i2", (2, 3), False)
    assert arr["creator_pid"] == __import__("os").getpid() and arr["creator_alive"] is True
    assert dic["kind"] == "map" and dic["types"] == {"key": "<i8", "value": "<U4"} and dic["capacity"] == 16
    assert shmkit.inspect(name)["shape"] == (2, 3)
    a.close()
    d.close()


def test_gc_removes_what_a_killed_creator_left_and_only_that(name: str) -> None:
    left, pid = orphan("gc")
    live = shmkit.create(name, 4)
    assert shmkit.gc(dry_run=True, creator=pid) == [left] and left in dev_shm(), "a dry run removes nothing"
    assert left in shmkit.gc(prefix=left)
    assert left not in dev_shm() and name in dev_shm()
    live.close()


def test_remove_and_unlink(name: str) -> None:
    kept = shmkit.create(name, 4)
    kept.persist()
    del kept
    assert name in dev_shm()
    shmkit.remove(name)
    with pytest.raises(shmkit.NotFound):
        shmkit.remove(name)
    with open(f"/dev/shm/{name}-raw", "wb") as f:
        f.write(b"not shmkit's")
    with pytest.raises(shmkit.BadSegment):
        shmkit.remove(name + "-raw")  # not shmkit's: only unlink removes it
    shmkit.unlink(name + "-raw")
    assert name + "-raw" not in dev_shm()


def test_doctor_reports_the_limits() -> None:
    d = shmkit.doctor()
    assert d["dev_shm_size"] >= d["dev_shm_free"] > 0 and d["open_files_limit"][0] > 0
    assert d["remove_ipc"] in (True, False, None) and all(isinstance(a, str) for a in d["advice"])


def test_python_m_shmkit_mirrors_the_command(name: str) -> None:
    a = shmkit.create(name, (4,), "f8")
    ls = cli("ls")
    assert ls.returncode == 0 and name in ls.stdout and "array <f8 (4,)" in ls.stdout
    assert any(s["name"] == name for s in json.loads(cli("ls", "--json").stdout))
    assert json.loads(cli("inspect", name).stdout)["shape"] == [4]
    left, pid = orphan("cli")
    dry = cli("gc", "--dry-run", "--creator", str(pid))
    assert dry.returncode == 0 and f"would remove 1\n  {left}" in dry.stdout and left in dev_shm()
    assert cli("gc", "--prefix", left).stdout.startswith("removed 1")
    assert left not in dev_shm()
    a.persist()
    a.close()
    assert cli("rm", name).returncode == 0 and name not in dev_shm()
    missing = cli("rm", name)
    assert missing.returncode == 1 and "no segment named" in missing.stderr
    assert cli("doctor").returncode == 0
    assert cli("frobnicate").returncode == 2, "a usage error"
