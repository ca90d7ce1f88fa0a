"""Tasks as bytes: the coordinator pickles a call (``dumps_call``), a
helper runs it (``run``, called by the Rust helper loop) and pickles the
outcome, which the coordinator reads back (``loads_outcome``).

A message is plain pickle bytes, or, when the pickle has out-of-band
buffers (protocol 5: numpy arrays, ``bytearray``/``PickleBuffer``), a
list of parts the native layer gathers into one message with a single
copy of each buffer: a header (``b"B"``, the count, the pickle's and each
buffer's length), the pickle, then each buffer at an offset 64 bytes
apart from the message's start. The reader hands the buffers to
``pickle.loads`` as slices of the message, so an array arrives without
another copy, writable and aligned for every dtype (the message is at
least 16-aligned: a ``bytearray``, or a mapping).

Functions travel by reference, as with ``multiprocessing``'s spawn: a
module and a qualified name, found again in the helper (functions of the
main script too: helpers import it as ``__mp_main__``). Lambdas, closures
and functions defined interactively cannot be found that way; they work
if ``cloudpickle`` is installed, which is then used for them alone.
"""

from __future__ import annotations

import pickle
import struct
import sys
from collections.abc import Callable

TYPE_CHECKING = False  # no `typing` at run time: helpers import this module
if TYPE_CHECKING:
    from typing import Any

PROTOCOL = 5

# Buffers start at offsets that are multiples of this in a message, so
# that arrays read from it are as aligned as the message itself.
_ALIGN = 64


PREPARING = False
"""True in a helper while it imports its coordinator's main script:
pools built then are refused (the script lacks its ``__main__`` guard)."""


class RemoteTraceback(Exception):
    """The helper-side traceback of a task's exception, set as that
    exception's ``__cause__`` (as ``concurrent.futures`` does)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def dumps(obj: object) -> bytes | list[Any]:
    """``obj`` pickled, its large buffers out of band (see the module's
    docstring)."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=PROTOCOL, buffer_callback=buffers.append)
    if not buffers:
        return data
    raws = [b.raw() for b in buffers]  # 1-d bytes views: contiguous, as pickle only sends those out of band
    lengths = [len(data), *(r.nbytes for r in raws)]
    header = struct.pack(f"<cI{len(lengths)}Q", b"B", len(raws), *lengths)
    parts: list[Any] = [header, data]
    offset = len(header) + len(data)
    for raw in raws:
        pad = -offset % _ALIGN
        if pad:
            parts.append(bytes(pad))
        parts.append(raw)
        offset += pad + raw.nbytes
    return parts


def loads(message: bytes | bytearray) -> Any:
    """What ``dumps`` pickled: ``message`` as the native layer delivers
    it (a ``bytearray`` when it has buffers, so arrays are writable)."""
    if message[:1] != b"B":
        return pickle.loads(message)
    view = memoryview(message)
    (count,) = struct.unpack_from("<I", view, 1)
    offset = 5 + 8 * (count + 1)
    if count > len(view) // 8 or offset > len(view):
        raise pickle.UnpicklingError("a message with out-of-band buffers has a corrupt header")
    data_len, *lengths = struct.unpack_from(f"<{count + 1}Q", view, 5)
    data = view[offset : offset + data_len]
    offset += data_len
    buffers = []
    for n in lengths:
        offset += -offset % _ALIGN
        buffers.append(view[offset : offset + n])
        offset += n
    if offset != len(view):
        raise pickle.UnpicklingError("a message with out-of-band buffers has a corrupt header")
    return pickle.loads(data, buffers=buffers)


def dumps_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes | list[Any]:
    """The pickled call ``fn(*args, **kwargs)``. A function pickle cannot
    send by reference goes through ``cloudpickle`` if it is installed;
    otherwise a ``TypeError`` says what to do."""
    try:
        if _main_not_importable(fn):
            raise pickle.PicklingError(f"{fn!r} is defined in a main module that helpers cannot import")
        return dumps((fn, args, kwargs))
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        if _by_reference(fn):
            raise TypeError(f"the task's arguments cannot be pickled: {e}") from e
        try:
            import cloudpickle  # type: ignore[import-not-found, import-untyped, unused-ignore]
        except ImportError:
            raise TypeError(
                f"{fn!r} cannot be sent to a helper: functions travel by reference (module and name), so a "
                "task must be a module-level function of an importable module or of the main script file; "
                "lambdas, closures and functions defined interactively or in `python -c` need "
                "`pip install cloudpickle`"
            ) from e
        return bytes(cloudpickle.dumps((fn, args, kwargs), protocol=PROTOCOL))


def _main_not_importable(fn: Callable[..., Any]) -> bool:
    """True for a function of a main module with no file or module name
    (``python -c``, an interactive session, a notebook): a helper has
    nothing to import it from."""
    if getattr(fn, "__module__", None) != "__main__":
        return False
    main = sys.modules.get("__main__")
    return getattr(main, "__file__", None) is None and getattr(getattr(main, "__spec__", None), "name", None) is None


def _by_reference(fn: Callable[..., Any]) -> bool:
    """True if pickle can send ``fn`` itself (so the arguments failed)."""
    if _main_not_importable(fn):
        return False
    try:
        pickle.dumps(fn, protocol=PROTOCOL)
        return True
    except Exception:
        return False


def run(payload: bytes | bytearray) -> bytes | list[Any]:
    """In a helper: runs the pickled call; ``(True, result)`` or
    ``(False, exception, traceback text)``, pickled."""
    try:
        fn, args, kwargs = loads(payload)
    except BaseException as e:  # noqa: BLE001 (every failure is the task's outcome)
        return _failure(e, "the helper could not unpickle the task: is its function importable there?")
    try:
        result = fn(*args, **kwargs)
    except BaseException as e:  # noqa: BLE001
        return _failure(e)
    finally:
        _flush()
    try:
        return dumps((True, result))
    except BaseException as e:  # noqa: BLE001
        return _failure(e, "the task's result could not be pickled")


def initialize(payload: bytes | bytearray) -> None:
    """In a helper, as it starts: runs the pool's initializer."""
    fn, args, kwargs = loads(payload)
    fn(*args, **kwargs)


def run_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    """``fn`` over a chunk of argument tuples (``starmap``, and ``map`` of
    several iterables)."""
    return [fn(*args) for args in chunk]


def run_chunk1(fn: Callable[[Any], Any], chunk: list[Any]) -> list[Any]:
    """``fn`` over a chunk of single arguments (``map``)."""
    return list(map(fn, chunk))


def _flush() -> None:
    """What the task printed reaches the pool's output now: a helper may
    be killed or replaced before Python would flush it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _failure(e: BaseException, context: str | None = None) -> bytes:
    import traceback  # on failure only: helpers start faster without it

    tb = "".join(traceback.format_exception(e))
    if context:
        tb = f"{context}\n{tb}"
    try:
        # The exception pickled on its own, so that one that does not
        # unpickle in the coordinator still brings its traceback.
        return pickle.dumps((False, pickle.dumps(e, protocol=PROTOCOL), tb), protocol=PROTOCOL)
    except BaseException:  # noqa: BLE001 (an exception that does not pickle: its text travels)
        return pickle.dumps((False, None, tb), protocol=PROTOCOL)


def loads_outcome(data: bytes | bytearray) -> tuple[bool, Any]:
    """In the coordinator: ``(True, result)``, or ``(False, exception)``
    with the helper's traceback as its ``__cause__``."""
    try:
        outcome = loads(data)
    except BaseException as e:  # noqa: BLE001
        from ._errors import Error

        return False, Error(f"the task's outcome could not be unpickled here: {e!r}")
    if outcome[0]:
        return True, outcome[1]
    _, pickled, tb = outcome
    try:
        exc = pickle.loads(pickled) if pickled is not None else None
    except BaseException:  # noqa: BLE001 (it pickled there but does not unpickle here)
        exc = None
    if not isinstance(exc, BaseException):
        from ._errors import Error

        exc = Error("the task raised an exception that could not be sent back; its traceback:\n" + tb)
    exc.__cause__ = RemoteTraceback(tb)
    return False, exc
