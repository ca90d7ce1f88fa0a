"""Helpers of the suite: unique segment names, Python and Rust peer
processes (each dies with the test run and has a deadline), the test
tier, and a leak check over the whole session.

The Rust peer is the workspace's ``tests/python.rs`` test binary, re-run
as a child told a task (``SHMKIT_RUST_PEER``; ``cargo test`` sets it).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PREFIX = f"shmkit-test-py-{os.getpid()}-"
_counter = itertools.count()


def unique(tag: str = "x") -> str:
    """A segment name no other test (or run) uses."""
    return f"{PREFIX}{tag}-{next(_counter)}"


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return unique(request.node.name[:20].replace("[", "-").replace("]", ""))


def long_tier() -> bool:
    """``SHMKIT_LONG_TESTS=1`` (set by ``.ci/run``): kill loops at full length."""
    return os.environ.get("SHMKIT_LONG_TESTS", "0") not in ("", "0")


def tier(short: int, long: int) -> int:
    return long if long_tier() else short


def seeded(what: str) -> random.Random:
    """A generator seeded from ``SHMKIT_TEST_SEED`` or the clock; the seed
    is printed, so a failing run replays."""
    seed = int(os.environ.get("SHMKIT_TEST_SEED", "0")) or random.SystemRandom().randrange(1, 2**63)
    print(f"{what}: seed {seed} (SHMKIT_TEST_SEED={seed} replays it)")
    return random.Random(seed)


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    # prctl(PR_SET_PDEATHSIG, SIGKILL): no child outlives the test run.
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def spawn_python(code: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
    """Starts ``python -c code args...`` (stdin, stdout, stderr piped,
    unless ``kw`` says otherwise)."""
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kw}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args], text=True, preexec_fn=_die_with_parent, **pipes
    )


def run_python(code: str, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs ``python -c code args...`` to the end; its output."""
    p = spawn_python(code, *args)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        p.kill()
    done = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    if check:
        assert p.returncode == 0, f"python child failed ({p.returncode}):\n{out}\n{err}"
    return done


def peer_command(task: str, fault: str | None = None) -> tuple[list[str], dict[str, str]]:
    exe = os.environ.get("SHMKIT_RUST_PEER")
    assert exe, "SHMKIT_RUST_PEER is unset: run this suite through `cargo test --test python`"
    test = os.environ.get("SHMKIT_RUST_PEER_TEST", "pytest_suite")
    env = dict(os.environ, SHMKIT_TEST_CHILD=task)
    env.pop("SHMKIT_FAULT_INJECT", None)
    if fault:
        env["SHMKIT_FAULT_INJECT"] = fault
    return [exe, "--exact", test, "--nocapture", "--test-threads=1", "-q"], env


_HARNESS = ("running ", "test ", "successes", "failures", "test result")


def _own(line: str) -> bool:
    """True for a line the peer task said (not the Rust test harness)."""
    line = line.strip()
    return line not in ("", ".") and not line.startswith(_HARNESS)


class Peer:
    """A Rust peer process running ``task``: ``line()`` reads what it says
    (within a deadline), ``go()`` lets a holding task end, ``finish()``
    waits for the end."""

    def __init__(self, task: str, fault: str | None = None) -> None:
        cmd, env = peer_command(task, fault)
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, preexec_fn=_die_with_parent,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if _own(line):
                self.lines.put(line.strip())
        self.lines.put(None)

    def line(self, timeout: float = 60) -> str:
        """The peer's next line; fails (killing it) past ``timeout``."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            if not os.environ.get("SHMKIT_KEEP_HUNG"):
                self.proc.kill()
            raise AssertionError(f"the Rust peer said nothing for {timeout} s: killed") from None
        if line is None:
            self.proc.wait(timeout=30)
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"the Rust peer ended ({self.proc.returncode}) without saying more:\n{err}")
        return line

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.proc.kill()
        return self.proc.returncode


def rust(task: str, fault: str | None = None, timeout: float = 60) -> list[str]:
    """Runs a Rust peer task to the end; the lines it said."""
    cmd, env = peer_command(task, fault)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          preexec_fn=_die_with_parent)
    lines = [line.strip() for line in done.stdout.splitlines() if _own(line)]
    if fault is None:
        assert done.returncode == 0, f"the Rust peer failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return lines


def dev_shm() -> set[str]:
    return set(os.listdir("/dev/shm"))


@pytest.fixture(scope="session", autouse=True)
def no_leaks() -> Iterator[None]:
    """Fails the session if a segment this suite named is left behind."""
    yield
    import gc

    gc.collect()
    import shmkit

    shmkit._shmkit._remove_owned_names()
    left = sorted(n for n in dev_shm() if n.startswith(PREFIX))
    assert not left, f"the suite left segments behind: {left}"


ROOT = Path(__file__).resolve().parents[2]
