"""Type stubs of the native module (``shmkit._shmkit``); the public names
are re-exported by ``shmkit``."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt

_Op = Literal["create", "create_unique", "open"]

class SharedArray:
    """An array in a named segment (or a ``.npy`` file).

    ``numpy.asarray(a)`` is the whole array: zero-copy, writable, with
    ``a`` as its ``base`` (the mapping lives as long as any view does).
    It is **unchecked**, as a numpy memmap is: claims of other views do
    not stop it. ``with a.rows_mut(i, j) as v:`` claims rows against
    every other shmkit view, in this process and others (Rust ones too);
    a view kept past the block is still valid memory, but no longer
    claimed.
    """

    @property
    def name(self) -> str:
        """The segment's name (a file's path, for a file-backed array)."""
    @property
    def shape(self) -> tuple[int, ...]:
        """Length of each axis."""
    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the elements."""
    @property
    def ndim(self) -> int:
        """Number of axes."""
    @property
    def size(self) -> int:
        """Number of elements."""
    @property
    def nbytes(self) -> int:
        """Bytes of data."""
    @property
    def is_owner(self) -> bool:
        """True if this handle created the segment and removes its name."""
    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
    @property
    def __array_interface__(self) -> dict[str, Any]:
        """numpy's array interface: ``numpy.asarray(a)``, unchecked."""
    def __len__(self) -> int: ...
    def rows(self, start: int, stop: int) -> Claim:
        """A read claim of rows ``start:stop``: ``with a.rows(0, 10) as v:``."""
    def rows_mut(self, start: int, stop: int) -> Claim:
        """A write claim of rows ``start:stop``: ``with a.rows_mut(0, 10) as v:``."""
    def view(self) -> Claim:
        """A read claim of the whole array."""
    def view_mut(self) -> Claim:
        """A write claim of the whole array."""
    def close(self) -> None:
        """Releases the handle; an owner removes the name now. Views taken
        before stay valid: unmapping waits for the last of them."""
    def persist(self) -> None:
        """Keeps the segment after its owner is gone (owners only)."""
    def remove_name(self) -> None:
        """Removes the name now (owners only); the mapping stays."""
    def flush(self) -> None:
        """Writes a file-backed array's changes to disk."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool: ...
    def __reduce__(self) -> tuple[Any, tuple[str]]: ...

class Claim:
    """A claim of rows as a context manager: entering takes it
    (``shmkit.Busy`` on a conflict) and yields a numpy view of the rows."""

    def __enter__(self) -> npt.NDArray[Any]: ...
    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool: ...
    def release(self) -> None:
        """Releases the claim now."""

class _Handle:
    """What every named object but arrays has."""

    @property
    def name(self) -> str:
        """The segment's name."""
    @property
    def is_owner(self) -> bool:
        """True if this handle created the segment and removes its name."""
    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
    def close(self) -> None:
        """Releases the handle; the creating handle removes the name."""
    def persist(self) -> None:
        """Keeps the segment after its creator is gone (creators only)."""
    def remove_name(self) -> None:
        """Removes the name now (creators only); the handle stays usable."""
    def __reduce__(self) -> tuple[Any, tuple[str, str]]: ...

class _Closing(_Handle):
    """A handle that ``with`` closes at the end of the block."""

    def __enter__(self) -> Self: ...
    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool: ...

class _Dict(_Closing):
    def __new__(
        cls,
        op: _Op,
        name: str | None = None,
        key_dtype: str | None = None,
        value_dtype: str | None = None,
        capacity: int = 0,
        lock_timeout: float | None = None,
    ) -> Self: ...
    @property
    def key_dtype(self) -> str:
        """The keys' dtype tag."""
    @property
    def value_dtype(self) -> str:
        """The values' dtype tag."""
    @property
    def capacity(self) -> int:
        """The capacity asked for at create."""
    @property
    def recoveries(self) -> int:
        """Repairs of stripes whose writer died mid-operation."""
    def __getitem__(self, key: Any) -> Any: ...
    def __setitem__(self, key: Any, value: Any) -> None: ...
    def __delitem__(self, key: Any) -> None: ...
    def __contains__(self, key: object) -> bool: ...
    def __len__(self) -> int: ...
    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
    def pop(self, key: Any, *default: Any) -> Any:
        """Removes ``key`` and returns its value, atomically."""
    def apply(self, key: Any, func: Any) -> Any:
        """Atomic read-modify-write: ``func(value or None)`` returns the
        new value (``None`` removes the entry); returns the new value."""
    def items(self) -> list[tuple[Any, Any]]:
        """Every ``(key, value)``, as one consistent snapshot."""
    def keys(self) -> list[Any]:
        """Every key, as one consistent snapshot."""
    def values(self) -> list[Any]:
        """Every value, as one consistent snapshot."""
    def __iter__(self) -> Any: ...

class _List(_Closing):
    def __new__(cls, op: _Op, name: str | None = None, dtype: str | None = None, capacity: int = 0) -> Self: ...
    @property
    def dtype(self) -> str:
        """The elements' dtype tag."""
    @property
    def capacity(self) -> int:
        """Most elements the list holds."""
    def append(self, value: Any) -> None:
        """Appends ``value`` (lock-free, from any number of processes)."""
    def extend(self, values: Any) -> None:
        """Appends every value of ``values``."""
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Any: ...
    def item(self, index: int) -> tuple[Literal["ready", "pending", "hole", "vacant"], Any]:
        """What slot ``index`` holds now, without waiting."""
    def to_list(self) -> list[Any]:
        """The complete elements, in order."""
    def __iter__(self) -> Any: ...

class _Lock(_Handle):
    def __new__(cls, op: _Op, name: str | None = None) -> Self: ...
    def acquire(self, blocking: bool = True, timeout: float = -1.0) -> bool:
        """Takes the lock; True if taken. ``shmkit.OwnerDied`` (the lock
        held) if a holder died holding it."""
    def release(self) -> None:
        """Releases the lock, held by this thread."""
    def acknowledge(self) -> None:
        """After ``OwnerDied``, with the lock held: declares it repaired."""
    def locked(self) -> bool:
        """True if some thread of some process holds it."""
    def __enter__(self) -> bool: ...
    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool: ...

class RWLockAccess:
    """A read or write access of an ``RWLock``: ``with access:``, or
    ``acquire()`` and ``release()``; it belongs to the thread that takes it."""

    def acquire(self) -> None:
        """Takes the access, waiting at most the ``timeout`` given to
        ``read``/``write`` (then ``shmkit.Timeout``). If a writer died holding
        the lock, raises ``shmkit.OwnerDied``: a write access is then held
        (repair, ``acknowledge()``, ``release()``); a read access is not."""
    def release(self) -> None:
        """Gives the access back (``shmkit.NotHeld`` if not held)."""
    def acknowledge(self) -> None:
        """After ``OwnerDied``, with this write access held: declares the
        damage repaired."""
    @property
    def held(self) -> bool:
        """True while this access is held."""
    def __enter__(self) -> None: ...
    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool: ...

class _RWLock(_Handle):
    def __new__(cls, op: _Op, name: str | None = None) -> Self: ...
    def read(self, timeout: float | None = None) -> RWLockAccess:
        """Shared access: ``with rw.read():``."""
    def write(self, timeout: float | None = None) -> RWLockAccess:
        """Exclusive access: ``with rw.write():``."""

class _Event(_Closing):
    def __new__(cls, op: _Op, name: str | None = None, auto_reset: bool = False) -> Self: ...
    def set(self) -> None:
        """Sets it."""
    def clear(self) -> None:
        """Clears it."""
    def is_set(self) -> bool:
        """True while set."""
    def wait(self, timeout: float | None = None) -> bool:
        """Waits until set; False on timeout."""

class _Barrier(_Closing):
    def __new__(cls, op: _Op, name: str | None = None, parties: int = 0) -> Self: ...
    @property
    def parties(self) -> int:
        """How many must arrive."""
    def wait(self, timeout: float | None = None) -> bool:
        """Waits for every party; True for exactly one of them."""

class _Counter(_Closing):
    def __new__(cls, op: _Op, name: str | None = None, value: int = 0) -> Self: ...
    @property
    def value(self) -> int:
        """The value now."""
    @value.setter
    def value(self, value: int) -> None: ...
    def add(self, n: int = 1) -> int:
        """Adds ``n``; returns the value before."""
    def sub(self, n: int = 1) -> int:
        """Subtracts ``n``; returns the value before."""
    def compare_exchange(self, current: int, new: int) -> int:
        """Sets it to ``new`` if it is ``current``; returns the value it had."""

class _Queue(_Closing):
    def __new__(cls, op: _Op, name: str | None = None, dtype: str | None = None, capacity: int = 0) -> Self: ...
    @property
    def dtype(self) -> str:
        """The records' dtype tag."""
    @property
    def capacity(self) -> int:
        """Most records the queue holds."""
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Puts ``item``; ``shmkit.Full`` if no room in time."""
    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``."""
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Takes the oldest record; ``shmkit.Empty`` if none in time."""
    def get_nowait(self) -> Any:
        """``get(block=False)``."""
    def shutdown(self, timeout: float | None = None) -> None:
        """Ends the stream."""
    def is_shutdown(self) -> bool:
        """True once shut down."""
    def qsize(self) -> int:
        """Records in the queue now."""
    def __len__(self) -> int: ...
    def empty(self) -> bool:
        """True if no record is in the queue now."""
    def full(self) -> bool:
        """True if the queue is full now."""

def _create(name: str, shape: list[int], dtype: str) -> SharedArray: ...
def _create_unique(shape: list[int], dtype: str) -> SharedArray: ...
def _create_from(name: str | None, shape: list[int], dtype: str, data: Any) -> SharedArray: ...
def _open(name: str) -> SharedArray: ...
def _create_file(path: str, shape: list[int], dtype: str) -> SharedArray: ...
def _open_file(path: str) -> SharedArray: ...
def _remove_owned_names() -> None: ...
def ls() -> list[dict[str, Any]]:
    """Every entry of ``/dev/shm`` shmkit can read, as dicts."""
def inspect(name: str) -> dict[str, Any]:
    """One segment's description."""
def gc(dry_run: bool = False, prefix: str | None = None, creator: int | None = None) -> list[str]:
    """Removes segments whose creator is gone; returns their names."""
def remove(name: str) -> None:
    """Removes shmkit segment ``name``."""
def unlink(name: str) -> None:
    """Removes ``/dev/shm`` entry ``name`` whatever it is."""
def doctor() -> dict[str, Any]:
    """The host's shared-memory limits and what to change."""

class _Pool:
    """The native half of ``shmkit.ProcessPool``."""

    def __new__(
        cls,
        helpers: int,
        program: str,
        args: list[str],
        env: list[tuple[str, str]],
        timeout: float | None = None,
        retries: int = 0,
        max_tasks: int | None = None,
        init: bytes | None = None,
    ) -> Self: ...
    def submit(self, message: _Outgoing) -> int: ...
    def next_done(self, timeout: float, most: int = 1024) -> list[tuple[int, tuple[Any, ...]]]: ...
    def cancel(self, key: int) -> bool: ...
    def pending(self) -> int: ...
    def helper_pids(self) -> list[int]: ...
    def terminate(self) -> None: ...

class _Publisher:
    """The native half of ``shmkit.Publisher``."""

    def __new__(
        cls,
        name: str,
        shape: list[int],
        dtype: str,
        slots: int = 8,
        policy: str = "block",
        lag: float = 1.0,
        subscribers: int | None = None,
        holds: int = 2,
    ) -> Self: ...
    @property
    def name(self) -> str: ...
    def loan(self, block: bool = True, timeout: float | None = None) -> _Loan: ...
    def publish(self, loan: _Loan) -> int: ...

class _Loan:
    """A lent slot: a writable buffer."""

    def __buffer__(self, flags: int) -> memoryview: ...
    def discard(self) -> None: ...

class _Subscriber:
    """The native half of ``shmkit.Subscriber``."""

    def __new__(cls, name: str, timeout: float | None = None) -> Self: ...
    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> list[int]: ...
    @property
    def dtype(self) -> str: ...
    def next(self, block: bool = True, timeout: float | None = None) -> _Sample: ...
    def latest(self, timeout: float | None = None) -> _Sample: ...

class _Sample:
    """A taken sample: a read-only buffer."""

    @property
    def seq(self) -> int: ...
    @property
    def missed(self) -> int: ...
    def release(self) -> None: ...
    def __buffer__(self, flags: int) -> memoryview: ...

class _Outgoing:
    """A task's call gathered for ``_Pool.submit``."""

def _message(payload: bytes | list[Any]) -> _Outgoing: ...
def _serve() -> None: ...
def _prepare_helper() -> bool: ...
