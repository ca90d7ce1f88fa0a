"""Locks, an event, a barrier, a counter and a queue across processes,
shaped as Python's ``threading`` and ``queue`` ones. Blocking calls
release the GIL and answer Ctrl-C within 50 ms; every wait takes a
timeout."""

from __future__ import annotations


from . import _shmkit
from ._dtypes import DTypeLike, tag


class Lock(_shmkit._Lock):
    """A robust lock across processes, as ``threading.Lock``:
    ``acquire(blocking=True, timeout=-1)``, ``release()``, ``with lock:``.

    The thread that acquires it releases it. If a holder dies holding it,
    the next taker gets ``shmkit.OwnerDied`` (see ``acquire``) instead of
    waiting forever. Pickles to its name.
    """

    @classmethod
    def create(cls, name: str) -> Lock:
        """Creates lock ``name``, free."""
        return cls("create", name)

    @classmethod
    def create_unique(cls) -> Lock:
        """Creates a free lock under a fresh unique name."""
        return cls("create_unique")

    @classmethod
    def open(cls, name: str) -> Lock:
        """Opens lock ``name``."""
        return cls("open", name)


class RWLock(_shmkit._RWLock):
    """A reader-writer lock across processes: ``with rw.read():`` (many
    readers at once) and ``with rw.write():`` (one writer). A holder's
    death raises ``shmkit.OwnerDied``. Pickles to its name."""

    @classmethod
    def create(cls, name: str) -> RWLock:
        """Creates reader-writer lock ``name``, free."""
        return cls("create", name)

    @classmethod
    def create_unique(cls) -> RWLock:
        """Creates a free reader-writer lock under a fresh unique name."""
        return cls("create_unique")

    @classmethod
    def open(cls, name: str) -> RWLock:
        """Opens reader-writer lock ``name``."""
        return cls("open", name)


class Event(_shmkit._Event):
    """An event across processes, as ``threading.Event``: ``set``,
    ``clear``, ``is_set``, ``wait(timeout=None)``. An ``auto_reset``
    event lets one waiter through per ``set``. Pickles to its name."""

    @classmethod
    def create(cls, name: str, *, auto_reset: bool = False) -> Event:
        """Creates event ``name``, not set."""
        return cls("create", name, auto_reset)

    @classmethod
    def create_unique(cls, *, auto_reset: bool = False) -> Event:
        """Creates an event, not set, under a fresh unique name."""
        return cls("create_unique", None, auto_reset)

    @classmethod
    def open(cls, name: str) -> Event:
        """Opens event ``name``."""
        return cls("open", name)


class Barrier(_shmkit._Barrier):
    """A barrier across processes: ``parties`` processes meet in
    ``wait(timeout=None)`` before any goes on; reusable. Pickles to its
    name."""

    @classmethod
    def create(cls, name: str, parties: int) -> Barrier:
        """Creates barrier ``name`` for ``parties`` processes."""
        return cls("create", name, parties)

    @classmethod
    def create_unique(cls, parties: int) -> Barrier:
        """Creates a barrier for ``parties`` under a fresh unique name."""
        return cls("create_unique", None, parties)

    @classmethod
    def open(cls, name: str) -> Barrier:
        """Opens barrier ``name``."""
        return cls("open", name)


class Counter(_shmkit._Counter):
    """An atomic unsigned 64-bit counter across processes: ``value``,
    ``add``, ``sub``, ``compare_exchange``. Pickles to its name."""

    @classmethod
    def create(cls, name: str, value: int = 0) -> Counter:
        """Creates counter ``name`` holding ``value``."""
        return cls("create", name, value)

    @classmethod
    def create_unique(cls, value: int = 0) -> Counter:
        """Creates a counter holding ``value`` under a fresh unique name."""
        return cls("create_unique", None, value)

    @classmethod
    def open(cls, name: str) -> Counter:
        """Opens counter ``name``."""
        return cls("open", name)


class Queue(_shmkit._Queue):
    """A bounded queue of records of one numpy dtype across processes, as
    ``queue.Queue``: ``put``, ``get`` (blocking, with a timeout, or
    ``_nowait``), ``qsize``. ``shutdown()`` ends the stream: ``get``
    raises ``shmkit.ShutDown`` once drained; no sentinels needed.

    A handle becomes a sender at its first ``put`` and a receiver at its
    first ``get``; once every sender is gone (closed, collected, or its
    process dead) a drained queue's ``get`` raises
    ``shmkit.Disconnected``. Pickles to its name.

    >>> q = shmkit.Queue.create_unique("i8", capacity=16)
    >>> q.put(7)
    >>> q.get()
    7
    """

    @classmethod
    def create(cls, name: str, dtype: DTypeLike, capacity: int) -> Queue:
        """Creates queue ``name`` holding up to ``capacity`` records."""
        return cls("create", name, tag(dtype), capacity)

    @classmethod
    def create_unique(cls, dtype: DTypeLike, capacity: int) -> Queue:
        """Creates a queue under a fresh unique name (see ``create``)."""
        return cls("create_unique", None, tag(dtype), capacity)

    @classmethod
    def open(cls, name: str) -> Queue:
        """Opens queue ``name``; its dtype is read from the segment."""
        return cls("open", name)


__all__ = ["Lock", "RWLock", "Event", "Barrier", "Counter", "Queue"]
