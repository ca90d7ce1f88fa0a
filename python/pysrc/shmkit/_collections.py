"""``Dict`` and ``List``: Python's ``Manager().dict()`` and ``.list()``
without a server process. The native bases (``shmkit._shmkit._Dict``,
``_List``) hold the segment; these add the ``collections.abc`` protocols
and the ``create``/``open`` constructors."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
TYPE_CHECKING = False  # no `typing` at run time (see shmkit/__init__.py)
if TYPE_CHECKING:
    from typing import Any

    _MappingBase = MutableMapping[Any, Any]
    _SequenceBase = Sequence[Any]
else:
    _MappingBase, _SequenceBase = MutableMapping, Sequence

from . import _shmkit
from ._dtypes import DTypeLike, tag


# keys(), values() and items() are snapshot lists, not Mapping's live views.
class Dict(_shmkit._Dict, _MappingBase):  # type: ignore[misc]
    """A hash map in a named shared-memory segment, keys and values of
    fixed-size numpy dtypes (numbers, ``'S32'`` bytes, ``'U16'`` text,
    structured records).

    Every process that opens it by name sees the same entries; there is
    no server. Each operation is atomic (keys hash to lock stripes, and a
    writer killed mid-operation is repaired by the next user: see
    ``recoveries``). ``apply(key, fn)`` is the atomic read-modify-write.
    ``keys()``, ``values()`` and ``items()`` return consistent snapshots
    as lists. A handle pickles to its name, so passing it to another
    process (``multiprocessing``, ``concurrent.futures``) opens it there.

    >>> d = shmkit.Dict.create_unique("i8", "f8", capacity=1000)
    >>> d[1] = 2.5
    >>> d.apply(1, lambda v: v * 2)
    5.0
    """

    @classmethod
    def create(
        cls,
        name: str,
        key_dtype: DTypeLike,
        value_dtype: DTypeLike,
        capacity: int,
        *,
        lock_timeout: float | None = None,
    ) -> Dict:
        """Creates map ``name`` holding up to ``capacity`` entries.

        ``lock_timeout``: most seconds a call waits for a lock stripe held
        by another process (``None``: as long as it takes; Ctrl-C ends
        the wait either way), then ``shmkit.Timeout``."""
        return cls("create", name, tag(key_dtype), tag(value_dtype), capacity, lock_timeout)

    @classmethod
    def create_unique(
        cls,
        key_dtype: DTypeLike,
        value_dtype: DTypeLike,
        capacity: int,
        *,
        lock_timeout: float | None = None,
    ) -> Dict:
        """Creates a map under a fresh unique name (see ``create``)."""
        return cls("create_unique", None, tag(key_dtype), tag(value_dtype), capacity, lock_timeout)

    @classmethod
    def open(cls, name: str, *, lock_timeout: float | None = None) -> Dict:
        """Opens map ``name``; its dtypes are read from the segment."""
        return cls("open", name, None, None, 0, lock_timeout)


class List(_shmkit._List, _SequenceBase):
    """An append-only list in a named shared-memory segment, elements of
    one fixed-size numpy dtype.

    ``append`` is lock-free from any number of processes. ``len`` counts
    the slots handed out, including appends under way (indexing one waits
    for it) and holes an appender killed mid-append left (indexing one
    raises ``shmkit.Hole``; iteration skips them). No item assignment:
    slots are written once. Pickles to its name.

    >>> l = shmkit.List.create_unique("U16", capacity=100)
    >>> l.append("processed_1")
    >>> list(l)
    ['processed_1']
    """

    @classmethod
    def create(cls, name: str, dtype: DTypeLike, capacity: int) -> List:
        """Creates list ``name`` holding up to ``capacity`` elements."""
        return cls("create", name, tag(dtype), capacity)

    @classmethod
    def create_unique(cls, dtype: DTypeLike, capacity: int) -> List:
        """Creates a list under a fresh unique name (see ``create``)."""
        return cls("create_unique", None, tag(dtype), capacity)

    @classmethod
    def open(cls, name: str) -> List:
        """Opens list ``name``; its dtype is read from the segment."""
        return cls("open", name)

    def __getitem__(self, index: Any) -> Any:
        """Element ``index``, or a list of the elements of a slice."""
        if isinstance(index, slice):
            return [super(List, self).__getitem__(i) for i in range(*index.indices(len(self)))]
        return super().__getitem__(index)
