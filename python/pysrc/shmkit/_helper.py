"""The main of a pool's helper interpreter: ``python -m shmkit._helper``,
started by the pool (never by hand), never forked.

It prepares what ``multiprocessing``'s spawn prepares (the coordinator's
``sys.path``, working directory and main script, imported as
``__mp_main__`` so that its functions are found), then serves tasks in
the Rust helper loop until the pool is gone. If the main script raises
on import, the traceback goes to the pool's error file and the helper
exits: the pool reports it to the caller.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import types
from collections.abc import Mapping


def prepare(env: Mapping[str, str]) -> None:
    """The coordinator's path, directory and main module, here (from the
    ``SHMKIT_PY_*`` variables the pool sets)."""
    if "SHMKIT_PY_PATH" in env:
        sys.path[:] = env["SHMKIT_PY_PATH"].split(os.pathsep)
    if "SHMKIT_PY_CWD" in env:
        os.chdir(env["SHMKIT_PY_CWD"])
    name, main = env.get("SHMKIT_PY_MAIN_NAME"), env.get("SHMKIT_PY_MAIN_PATH")
    if name and name != "__main__" and not name.endswith(".__main__"):
        _main_module(runpy.run_module(name, run_name="__mp_main__", alter_sys=True))
    elif main:
        _main_module(runpy.run_path(main, run_name="__mp_main__"))


def _main_module(namespace: dict[str, object]) -> None:
    """Installs the coordinator's main module, run here as ``__mp_main__``
    (its ``if __name__ == "__main__":`` block does not run), as
    ``__main__`` too: what ``multiprocessing``'s spawn does, without
    importing ``multiprocessing`` (a helper starts faster)."""
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(namespace)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def main() -> None:
    from shmkit import _shmkit, _worker

    if not _shmkit._prepare_helper():
        sys.exit("shmkit._helper is started by shmkit's pools, not by hand")
    # Ctrl-C in a terminal reaches the whole process group: it is the
    # coordinator's to answer; its helpers die with it. (Restored for the
    # tasks below, and the processes they start.)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _worker.PREPARING = True  # a pool built by the main script here is refused
        prepare(os.environ)
        _worker.PREPARING = False
    except BaseException:  # noqa: BLE001 (reported, then this helper exits)
        import traceback

        errfile = os.environ.get("SHMKIT_PY_ERRFILE")
        try:
            # The pool's own unlinked file, through /proc/<pool>/fd: append.
            fd = os.open(str(errfile), os.O_WRONLY | os.O_APPEND)
            with os.fdopen(fd, "a") as f:
                f.write(traceback.format_exc())
        except (OSError, TypeError):
            traceback.print_exc()
        sys.exit(1)
    signal.signal(signal.SIGINT, previous)
    _shmkit._serve()


if __name__ == "__main__":
    main()
