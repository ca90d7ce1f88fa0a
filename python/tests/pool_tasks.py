"""Tasks the pool tests submit: module-level functions, found by
reference in the helpers (as ``spawn`` finds them)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import shmkit

_state: dict[str, Any] = {}


def square(x: int) -> int:
    return x * x


def add(x: int, y: int = 0, *, z: int = 0) -> int:
    return x + y + z


def fail(message: str) -> None:
    raise ValueError(message)


def die(sig: int = signal.SIGKILL) -> None:
    """Ends this helper with ``sig`` mid-task."""
    os.kill(os.getpid(), sig)
    time.sleep(10)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def pid() -> int:
    return os.getpid()


def count_then_sleep(counter: shmkit.Counter, seconds: float) -> int:
    """Counts that it ran (in shared memory), then sleeps."""
    counter.add(1)
    time.sleep(seconds)
    return os.getpid()


def remember(value: Any) -> None:
    """An initializer: keeps ``value`` in this helper."""
    _state["init"] = value


def remembered() -> Any:
    return _state.get("init")


def refuse_to_start() -> None:
    raise RuntimeError("this initializer refuses")


def unpicklable_result() -> Any:
    return threading.Lock()


def big_result(n: int) -> bytes:
    return b"x" * n


class Dummy:
    """An object a task returns (weak-referenceable)."""


def make_dummy_object(_: object) -> Dummy:
    return Dummy()


def add_one_in_place(a: Any) -> tuple[Any, str, bool, bool]:
    """Adds one to ``a`` where it arrived; ``a``, what holds its memory,
    and whether it arrived writable and aligned."""
    base = a
    while type(base).__name__ == "ndarray" and base.base is not None:
        base = base.base
    info = (type(base).__name__, bool(a.flags.writeable), bool(a.flags.aligned))
    a += 1
    return (a, *info)


def add_one_then_die_once(a: Any, marker: str) -> Any:
    """Adds one to ``a`` in place; the first time, then dies (as the OOM
    killer would end it), leaving a marker file."""
    a += 1
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return a
