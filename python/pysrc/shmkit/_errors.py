"""shmkit's exceptions: one hierarchy under :class:`Error`.

Each class is also a subclass of the built-in exception it is a case of,
so code written against the standard library keeps working: ``except
FileNotFoundError`` catches :class:`NotFound`, ``except queue.Empty``
catches :class:`Empty`, ``except TimeoutError`` catches :class:`Timeout`.
The native module raises these (``shmkit._shmkit`` maps each Rust error to
one); the message is the Rust one, which says what to do.
"""

from __future__ import annotations

import queue as _queue
import sys
TYPE_CHECKING = False  # no `typing` at run time (see shmkit/__init__.py)
if TYPE_CHECKING:
    from typing import Any

if sys.version_info >= (3, 13):
    # Python 3.13 added queue.ShutDown: shmkit's is a case of it there.
    from queue import ShutDown as _QueueShutDown
else:

    class _QueueShutDown(Exception):
        """``queue.ShutDown`` before Python 3.13."""


class Error(Exception):
    """Base class of every exception shmkit raises."""


# Segments: names, sizes, kinds.


class NotFound(Error, FileNotFoundError):
    """No segment (or file) of that name: create it first, or check the name."""


class AlreadyExists(Error, FileExistsError):
    """A segment of that name exists: open it, pick another name, or
    use ``create_unique``."""


class InvalidName(Error, ValueError):
    """Not a valid segment name (empty, a ``/`` inside, or too long)."""


class PermissionDenied(Error, PermissionError):
    """The segment belongs to another user, or a primitive's segment is
    writable by others (its lock words would be trusted)."""


class NoSpace(Error, OSError):
    """``/dev/shm`` (or the disk) is full: ``shmkit.gc()`` removes what
    crashed programs left; ``shmkit.doctor()`` shows the limits."""


class LimitReached(Error, OSError):
    """A process limit was hit (open files, memory mappings, handles)."""


class BadSegment(Error, ValueError):
    """The segment is not what shmkit writes (too small, a bad header, a
    layout of an older version)."""


class WrongType(Error, TypeError):
    """The segment holds another kind of object, dtype or shape than
    asked for."""


class InvalidArgument(Error, ValueError):
    """An argument out of range (a size that overflows, rows past the end,
    a value of the wrong length)."""


class UnsupportedDtype(Error, TypeError):
    """Arrays hold plain numbers: the message lists the dtypes they take."""


class NotOwner(Error):
    """Only the handle that created a segment may do this (``persist``,
    ``remove_name``), and only while its name is still its own."""


class Inherited(Error):
    """A handle inherited across ``fork`` cannot do this: open the segment
    again by name in the child."""


class Busy(Error):
    """A claim of rows conflicts with another view, in this process or
    another: wait for it to end, or claim other rows."""


class IoError(Error, OSError):
    """The system refused an operation; the message names it."""


# Collections and queues.


class Full(Error, _queue.Full):
    """No room: a full ``Dict`` (create it with a larger capacity), a
    full ``List``, or a ``Queue`` with no room in time."""


class Empty(Error, _queue.Empty):
    """Nothing arrived in the ``Queue`` in time."""


class Timeout(Error, TimeoutError):
    """A lock, barrier or stripe was not free in time."""


class Stalled(Error):
    """The ``Queue``'s lock is held by a process that is not running (it
    is stopped or swapped out): try again, or use a blocking call."""


class ShutDown(Error, _QueueShutDown):
    """The ``Queue`` was shut down (and is drained), or a stream's publisher
    ended it (and every sample was read): the end of the stream."""


class Disconnected(Error, BrokenPipeError):
    """Every handle on the other side of the ``Queue`` is gone."""


class Broken(Error):
    """The object's shared state is damaged beyond repair (a process died
    in a step that cannot be undone): recreate it."""


class Hole(Error, LookupError):
    """A ``List`` slot whose appender died mid-append: it will never hold
    a value. ``List.item(i)`` reports holes without raising."""


class Closed(Error, ValueError):
    """The handle was closed: open the segment again by name."""


# Locks.


class Deadlock(Error, RuntimeError):
    """This thread holds the lock already (taking it again would never
    return), or a call would wait on itself."""


class NotHeld(Error, RuntimeError):
    """Releasing or acknowledging a lock this thread does not hold."""


class OwnerDied(Error):
    """A holder of the lock died holding it.

    After ``lock.acquire()`` the lock **is held** by this thread: repair
    what it protects, call ``lock.acknowledge()`` (so later takers are no
    longer told), then ``lock.release()``. Out of a ``with lock:`` block
    the lock is released again before this propagates, so nothing is left
    held and the next taker is told too. ``lock`` is the lock concerned.
    """

    lock: Any


# The pool.


class WorkerDied(Error):
    """The helper process running the task died (killed, OOM-killed,
    crashed); this task alone failed, and a new helper took its place.
    ``signal`` is the signal that ended it (9: SIGKILL or the OOM
    killer), or ``None`` if it exited."""

    signal: int | None = None


class TaskTimeout(Timeout):
    """The task ran past the pool's ``timeout``: its helper was killed
    and replaced (the other tasks go on)."""


class PublisherDied(Error):
    """The stream's publisher died; every sample it published was read.
    Open the stream again to follow a publisher restarted under its name."""


class Dropped(Error):
    """This subscriber held a ``block`` stream's publisher back longer than
    the stream's lag limit and was dropped; the next read goes on from
    the newest sample."""


class WorkerStartFailed(Error):
    """The pool's helpers could not start (the main script raised on
    import, or the initializer did): the message has the helper's
    traceback. The next submit tries again."""


__all__ = [
    "Error",
    "NotFound",
    "AlreadyExists",
    "InvalidName",
    "PermissionDenied",
    "NoSpace",
    "LimitReached",
    "BadSegment",
    "WrongType",
    "InvalidArgument",
    "UnsupportedDtype",
    "NotOwner",
    "Inherited",
    "Busy",
    "IoError",
    "Full",
    "Empty",
    "Timeout",
    "Stalled",
    "ShutDown",
    "Disconnected",
    "Broken",
    "Hole",
    "Closed",
    "Deadlock",
    "NotHeld",
    "OwnerDied",
    "WorkerDied",
    "TaskTimeout",
    "WorkerStartFailed",
    "PublisherDied",
    "Dropped",
]
