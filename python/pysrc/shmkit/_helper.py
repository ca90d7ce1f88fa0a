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

import json
import os
import signal
import sys
import traceback


def prepare(prep: dict[str, object]) -> None:
    """The coordinator's path, directory and main module, here."""
    from multiprocessing import spawn

    path = prep.get("sys_path")
    if isinstance(path, list):
        sys.path[:] = [str(p) for p in path]
    cwd = prep.get("cwd")
    if isinstance(cwd, str):
        os.chdir(cwd)
    name, path = prep.get("main_name"), prep.get("main_path")
    if isinstance(name, str):
        spawn._fixup_main_from_name(name)  # type: ignore[attr-defined]
    elif isinstance(path, str):
        spawn._fixup_main_from_path(path)  # type: ignore[attr-defined]


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group: it is the
    # coordinator's to answer; its helpers die with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prep = json.loads(os.environ.get("SHMKIT_PY_PREP", "{}"))
    try:
        prepare(prep)
    except BaseException:  # noqa: BLE001 (reported, then this helper exits)
        errfile = prep.get("errfile")
        if isinstance(errfile, str):
            with open(errfile, "a") as f:
                f.write(traceback.format_exc())
        else:
            traceback.print_exc()
        sys.exit(1)
    from shmkit import _shmkit

    _shmkit._serve()


if __name__ == "__main__":
    main()
