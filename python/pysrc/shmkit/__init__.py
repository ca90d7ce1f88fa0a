"""shmkit: named numpy arrays in shared memory with safe lifetimes, a
``Manager`` dict and list without a server, robust locks and queues, and
garbage collection of what crashed programs leave in ``/dev/shm``.

Arrays::

    a = shmkit.create("frames", (1024, 1024), "f4")   # this process owns it
    v = numpy.asarray(a)                               # zero-copy, writable
    # elsewhere: b = shmkit.open("frames")             # shape, dtype from the segment
    with a.rows_mut(0, 512) as top:                    # claimed against every view
        top *= 2
    a.close()                                          # the owner removes the name

Only the creating handle removes a name: at ``close()``, when collected,
or at interpreter exit; openers never do, and neither do forked children.
Segments are ``.npy`` files in ``/dev/shm``, shared with Rust programs
(the ``shmkit`` crate), the ``shmkit`` command and ``numpy.load``.
"""

from __future__ import annotations

import atexit as _atexit
from collections.abc import Sequence as _Sequence
# No `typing` at run time: a pool's helper interpreters import shmkit,
# and `typing` (with `re`) costs them several milliseconds to start.
_TYPE_CHECKING = False
if _TYPE_CHECKING:
    from typing import Any as _Any

from . import _shmkit
from ._collections import Dict, List
from ._dtypes import DTypeLike, tag as _tag
from ._errors import *  # noqa: F403 (the hierarchy is public)
from ._errors import __all__ as _error_names
from ._shmkit import Claim, RWLockAccess, SharedArray, doctor, inspect, ls, remove, unlink
from ._shmkit import gc as gc  # public, but not in __all__ (it would shadow the gc module)
from ._sync import Barrier, Counter, Event, Lock, Queue, RWLock

__version__ = "0.1.0"

Shape = int | _Sequence[int]
"""An array's shape: a length, or a length per axis."""


def _shape(shape: Shape) -> list[int]:
    return [int(shape)] if isinstance(shape, int) else [int(n) for n in shape]


def create(name: str, shape: Shape, dtype: DTypeLike = "f8") -> SharedArray:
    """Creates segment ``name`` holding a zeroed array of ``shape`` and
    ``dtype`` (signed and unsigned integers of 1 to 8 bytes, ``float32``,
    ``float64``; another dtype raises ``shmkit.UnsupportedDtype`` naming
    these). This handle owns it: the
    name is removed at ``close()``, when the handle is collected, or at
    interpreter exit, unless ``persist()`` was called.

    ``AlreadyExists`` if the name is taken; ``NoSpace`` if ``/dev/shm``
    cannot hold it (the memory is reserved now, not at first touch).
    """
    return _shmkit._create(name, _shape(shape), _tag(dtype))


def create_unique(shape: Shape, dtype: DTypeLike = "f8") -> SharedArray:
    """Like ``create``, under a fresh unique name (``handle.name``)."""
    return _shmkit._create_unique(_shape(shape), _tag(dtype))


def create_from(name: str | None, array: _Any) -> SharedArray:
    """Creates segment ``name`` (``None``: a unique name) holding a copy
    of ``array`` (anything ``numpy.asarray`` takes). The data is copied
    before the name appears: no other process sees it half-written."""
    import numpy as np  # on first use: see _dtypes

    data = np.ascontiguousarray(array)
    flat = data.reshape(-1).view(np.uint8)
    return _shmkit._create_from(name, list(data.shape), _tag(data.dtype), flat)


def open(name: str) -> SharedArray:  # noqa: A001 (shmkit.open, as io.open)
    """Opens segment ``name``: its shape and dtype come from the segment.
    This handle never removes the name."""
    return _shmkit._open(name)


def create_file(path: str, shape: Shape, dtype: DTypeLike = "f8") -> SharedArray:
    """Creates the ``.npy`` file ``path`` (which must not exist), zeroed,
    mapped shared: the array on disk, ``numpy.load``-able. ``flush()``
    writes changes through; the file is never removed by shmkit."""
    return _shmkit._create_file(str(path), _shape(shape), _tag(dtype))


def open_file(path: str) -> SharedArray:
    """Opens the ``.npy`` file ``path`` read-write, mapped shared."""
    return _shmkit._open_file(str(path))


# The pools are imported on first use: they need concurrent.futures and
# multiprocessing, which a pool's helper interpreters start faster without.
_LAZY = {
    "Pool": "_mp",
    "AsyncResult": "_mp",
    "ProcessPool": "_pool",
    "RemoteTraceback": "_worker",
    "Publisher": "_stream",
    "Subscriber": "_stream",
    "Sample": "_stream",
    "Loan": "_stream",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shmkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


if _TYPE_CHECKING:
    from ._mp import AsyncResult, Pool
    from ._pool import ProcessPool
    from ._stream import Loan, Publisher, Sample, Subscriber
    from ._worker import RemoteTraceback

# Python does not always collect every object at shutdown: remove the
# names of owning handles still alive. Registered at import, so it runs
# after atexit hooks registered later (user code that still uses them).
_atexit.register(_shmkit._remove_owned_names)

__all__ = [
    "Pool",
    "AsyncResult",
    "ProcessPool",
    "RemoteTraceback",
    "Publisher",
    "Subscriber",
    "Sample",
    "Loan",
    "SharedArray",
    "Claim",
    "create",
    "create_unique",
    "create_from",
    "create_file",
    "open_file",
    "Dict",
    "List",
    "Lock",
    "RWLock",
    "RWLockAccess",
    "Event",
    "Barrier",
    "Counter",
    "Queue",
    "ls",
    "inspect",
    "remove",
    "unlink",
    "doctor",
    *_error_names,
]
