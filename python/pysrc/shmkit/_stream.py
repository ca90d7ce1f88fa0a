"""Streams of arrays between programs: ``Publisher`` writes each sample
in place in a shared slot and publishes it; ``Subscriber`` reads it where
it is, zero-copy, every sample in order (``next``) or the newest
(``latest``). The same streams as Rust's ``shmkit::stream``.

``numpy.asarray(sample)`` is a zero-copy, read-only view (``numpy.array``
a copy); the native objects behind them are buffers. A sample keeps its slot while it or any view of it lives
(so no view reads a slot the publisher reuses); ``release()`` with a view
alive raises ``BufferError``. A loan is written through itself
(``loan[...] = frame``) or a view dropped before ``publish``, which raises
``BufferError`` while a view of the loan lives.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no `typing` at run time (see shmkit/__init__.py)
if TYPE_CHECKING:
    from typing import Any

    from ._dtypes import DTypeLike

from . import _shmkit
from ._dtypes import tag as _tag


def _array(native: Any, dtype: Any, copy: Any) -> Any:
    """numpy's view of a loan or sample (a copy if ``copy``: numpy 2 trusts
    ``__array__`` to have copied when asked). Through a memoryview: a
    refused buffer raises, where numpy would quietly make an object array."""
    import numpy as np

    view = np.asarray(memoryview(native), dtype=dtype)
    return np.array(view, copy=True) if copy else view


class Loan:
    """A slot to write the next sample in (``Publisher.loan()``):
    ``loan[...] = frame`` writes it in place; ``numpy.asarray(loan)`` is a
    writable view, to drop before ``publish``. ``discard()`` (or the
    collection of an unpublished loan) gives the slot back; ``with
    pub.loan() as loan:`` publishes it at the block's end, or discards it
    if the block raised."""

    __slots__ = ("_native",)

    def __init__(self, native: _shmkit._Loan) -> None:
        self._native = native

    def __setitem__(self, key: Any, value: Any) -> None:
        import numpy as np

        np.asarray(memoryview(self._native))[key] = value  # the view dies here

    def __getitem__(self, key: Any) -> Any:
        import numpy as np

        return np.array(np.asarray(memoryview(self._native))[key])  # a copy: nothing of the slot kept

    def __buffer__(self, flags: int) -> memoryview:
        return memoryview(self._native)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        return _array(self._native, dtype, copy)

    def discard(self) -> None:
        """Gives the slot back unpublished (``BufferError`` while a view of
        it lives); harmless twice."""
        self._native.discard()


class Publisher:
    """The one writer of stream ``name``: samples of ``shape`` and
    ``dtype`` in ``slots`` slots. ``policy="block"``: ``loan`` waits for
    in-order subscribers that have not read the slot it would reuse, and
    drops one holding it back longer than ``lag`` seconds (it hears
    ``shmkit.Dropped``); ``"overwrite"``: the oldest unread slot is reused
    (a subscriber's next sample says how many it ``missed``). At most
    ``subscribers`` at once, each holding ``holds`` samples (2 by default,
    so that ``a = numpy.asarray(sample)`` in a loop still holds the last
    one while the next is taken; Rust's default is 1); ``slots`` must cover
    them (``subscribers * holds + 2``). Threads sharing a publisher may
    hold as many loans at once as the slots spare beyond that: more raise
    ``shmkit.LimitReached`` at once rather than wait.

    A publisher whose process died is replaced by the next one created
    under the name. Closing (or the ``with`` block's end) ends the stream:
    subscribers read what was published, then get ``shmkit.ShutDown``.
    """

    def __init__(
        self,
        name: str,
        shape: int | tuple[int, ...] | list[int],
        dtype: DTypeLike = "u1",
        *,
        slots: int = 8,
        policy: str = "block",
        lag: float = 1.0,
        subscribers: int | None = None,
        holds: int = 2,
    ) -> None:
        dims = [int(shape)] if isinstance(shape, int) else [int(n) for n in shape]
        self._native: _shmkit._Publisher | None = _shmkit._Publisher(
            name, dims, _tag(dtype), slots, policy, lag, subscribers, holds
        )
        self.name = name

    def _p(self) -> _shmkit._Publisher:
        if self._native is None:
            from ._errors import Closed

            raise Closed(f"publisher of {self.name!r} is closed")
        return self._native

    def loan(self, block: bool = True, timeout: float | None = None) -> Loan:
        """A free slot for the next sample (``shmkit.Timeout`` after
        ``timeout`` seconds; ``block=False``: ``shmkit.Full`` if none now)."""
        return Loan(self._p().loan(block, timeout))

    def publish(self, loan: Loan) -> int:
        """Publishes ``loan`` as the newest sample; its sequence number."""
        return self._p().publish(loan._native)

    def send(self, frame: Any, timeout: float | None = None) -> int:
        """Copies ``frame`` into a loan and publishes it (one copy)."""
        loan = self.loan(timeout=timeout)
        try:
            loan[...] = frame
        except BaseException:
            loan.discard()  # not left to a traceback that keeps it
            raise
        return self.publish(loan)

    def lend(self, timeout: float | None = None) -> _Lending:
        """``with pub.lend() as loan:`` a loan published at the block's end
        (discarded if the block raised)."""
        return _Lending(self, self.loan(timeout=timeout))

    def close(self) -> None:
        """Ends the stream (once no loan of it is left)."""
        self._native = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Lending:
    """``Publisher.lend()``'s context manager."""

    __slots__ = ("_publisher", "_loan", "seq")

    def __init__(self, publisher: Publisher, loan: Loan) -> None:
        self._publisher, self._loan, self.seq = publisher, loan, 0

    def __enter__(self) -> Loan:
        return self._loan

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.seq = self._publisher.publish(self._loan)
        else:
            self._loan.discard()


class Sample:
    """A sample taken from a stream: ``numpy.asarray(sample)`` reads its
    slot in place (read-only); ``seq`` and ``missed``. Its slot is held
    while it or any view of it lives (a subscriber holds ``holds`` at
    once, 2 by default: ``shmkit.LimitReached`` says when a view kept too
    long is in the way); ``release()``, or the end of a ``with`` block,
    lets it go at once if no view of it is left."""

    __slots__ = ("_native",)

    def __init__(self, native: _shmkit._Sample) -> None:
        self._native = native

    @property
    def seq(self) -> int:
        """The sample's sequence number (1 for the stream's first)."""
        return self._native.seq

    @property
    def missed(self) -> int:
        """Samples skipped before this one (overwritten unread)."""
        return self._native.missed

    def release(self) -> None:
        """Lets go of the slot now; ``BufferError`` while a view of it lives."""
        self._native.release()

    def __buffer__(self, flags: int) -> memoryview:
        return memoryview(self._native)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        return _array(self._native, dtype, copy)

    def __enter__(self) -> Sample:
        return self

    def __exit__(self, *exc: object) -> None:
        # A view kept past the block keeps the slot held until it goes
        # (raising here would hide the block's own exception).
        try:
            self._native.release()
        except BufferError:
            pass


class Subscriber:
    """Reads stream ``name``, waiting up to ``timeout`` seconds for it to
    appear (so programs start in any order). ``next`` gives every sample
    published from now on, in order; ``latest`` the newest. At the end of
    the stream: ``shmkit.ShutDown``; if its publisher died:
    ``shmkit.PublisherDied`` (open it again to follow a restarted one)."""

    def __init__(self, name: str, timeout: float | None = None) -> None:
        """``timeout``: seconds to wait for the stream to appear (``None``:
        it must exist now; ``shmkit.NotFound`` otherwise)."""
        self._native = _shmkit._Subscriber(name, timeout)
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        """A sample's shape."""
        return tuple(self._native.shape)

    @property
    def dtype(self) -> str:
        """The samples' numpy dtype."""
        return self._native.dtype

    def next(self, block: bool = True, timeout: float | None = None) -> Sample:
        """The next sample in order (``shmkit.Empty`` after ``timeout``)."""
        return Sample(self._native.next(block, timeout))

    def latest(self, timeout: float | None = None) -> Sample:
        """The newest sample, perhaps one seen before (``seq`` tells); from
        then on this handle holds no ``block`` publisher back."""
        return Sample(self._native.latest(timeout))

    def __iter__(self) -> Any:
        """Every sample in order, until the stream ends; each is released
        when the next is taken (unless a view of it is still alive)."""
        from ._errors import Dropped, ShutDown

        while True:
            try:
                sample = self.next()
            except ShutDown:
                return
            except Dropped:
                continue  # it goes on from the newest sample
            yield sample
            # Taken the next: this one goes, unless a view of it lives on.
            try:
                sample.release()
            except BufferError:
                pass

    def close(self) -> None:
        """Gives this subscriber's place back (samples still alive keep
        theirs until they go)."""
        self._native = _ClosedSubscriber(self.name)  # type: ignore[assignment]

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ClosedSubscriber:
    """What a closed ``Subscriber`` holds: every use says so."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        from ._errors import Closed

        raise Closed(f"subscriber of {self.name!r} is closed: open the stream again")
