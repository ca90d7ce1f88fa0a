"""``python -m shmkit ls|inspect|gc|rm|doctor``: the ``shmkit`` command's
everyday verbs, for machines with only the Python package."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import shmkit


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _row(seg: dict[str, Any]) -> str:
    if "error" in seg:
        return f"{seg['name']:<40} unreadable: {seg['error']}"
    what = seg["kind"]
    if "shape" in seg:
        what += f" {seg['dtype']} {tuple(seg['shape'])}"
    alive = {True: "alive", False: "gone", None: "?"}[seg.get("creator_alive")]
    flags = " persistent" if seg.get("persistent") else ""
    flags += " GARBAGE" if seg.get("garbage") else ""
    return f"{seg['name']:<40} {_size(seg['bytes']):>10}  {what}  creator {seg.get('creator_pid', '?')} ({alive}){flags}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shmkit", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)
    ls = sub.add_parser("ls", help="list shmkit segments")
    ls.add_argument("--json", action="store_true", help="one JSON document")
    sub.add_parser("inspect", help="describe one segment").add_argument("name")
    gc = sub.add_parser("gc", help="remove segments whose creator is gone")
    gc.add_argument("--dry-run", action="store_true", help="only say what would go")
    gc.add_argument("--prefix", help="only names starting with this")
    gc.add_argument("--creator", type=int, help="only segments this pid made")
    rm = sub.add_parser("rm", help="remove a segment")
    rm.add_argument("name")
    rm.add_argument("--force", action="store_true", help="remove any /dev/shm entry, shmkit's or not")
    sub.add_parser("doctor", help="the host's shared-memory limits")
    args = parser.parse_args(argv)

    try:
        if args.verb == "ls":
            segments = shmkit.ls()
            print(json.dumps(segments, indent=1) if args.json else "\n".join(map(_row, segments)) or "(none)")
        elif args.verb == "inspect":
            print(json.dumps(shmkit.inspect(args.name), indent=1))
        elif args.verb == "gc":
            gone = shmkit.gc(dry_run=args.dry_run, prefix=args.prefix, creator=args.creator)
            verb = "would remove" if args.dry_run else "removed"
            print(f"{verb} {len(gone)}" + "".join(f"\n  {n}" for n in gone))
        elif args.verb == "rm":
            (shmkit.unlink if args.force else shmkit.remove)(args.name)
        elif args.verb == "doctor":
            print(json.dumps(shmkit.doctor(), indent=1))
    except shmkit.Error as e:
        print(f"shmkit: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
