"""numpy dtypes as the tags shmkit stores in a segment, and back.

A tag is the spelling numpy itself prints: ``dtype.str`` for a plain type
(``'<f8'``, ``'|S16'``, ``'<U8'``), ``(shape)`` then the type for a
sub-array (``'(3,)<f4'``), and ``dtype.descr`` for a structure
(``"[('id', '<u8'), ('pos', '<f8', (3,))]"``). Rust's ``record!`` types
write the same tags, so a segment made on one side opens on the other.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no `typing` at run time (see shmkit/__init__.py)
if TYPE_CHECKING:
    from typing import Any

    import numpy as np

# numpy is imported on first use, not with shmkit: a pool's helper
# interpreters start without it (importing numpy costs about 100 ms).

if TYPE_CHECKING:
    DTypeLike = Any
else:
    DTypeLike = object
"""Anything ``numpy.dtype()`` takes: ``'f8'``, ``np.float64``, ``float``, ..."""


def tag(dtype: DTypeLike) -> str:
    """The tag of ``dtype`` (anything ``numpy.dtype`` takes)."""
    import numpy as np

    dt = np.dtype(dtype)
    if dt.fields is not None:
        return str(dt.descr)
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return f"{shape}{base.str}"
    return dt.str


def dtype(tag: str) -> np.dtype[Any]:
    """The numpy dtype of a stored tag."""
    import numpy as np

    if tag.startswith("["):
        import ast

        made: np.dtype[Any] = np.dtype(ast.literal_eval(tag))
        return made
    return np.dtype(tag)
