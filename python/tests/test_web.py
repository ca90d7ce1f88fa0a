"""The FastAPI example under load: requests answered while helpers are
SIGKILLed at random moments, deadlines that stop their tasks, and a
server whose memory and open files stay flat."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import seeded, spawn_python, tier

EXAMPLE = Path(__file__).parents[1] / "examples" / "fastapi_app.py"


def post(port: int, path: str, body: Any, timeout: float = 60) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return json.loads(r.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(port: int) -> Any:
    server = spawn_python(f"import runpy, sys; sys.argv = ['app', '{port}']; runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            get(port, "/workers")
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise AssertionError(f"the server did not start: {server.communicate()}")


def usage(pid: int) -> tuple[int, int]:
    """Resident memory (KiB) and open files of process ``pid``."""
    rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def test_the_web_example_survives_killed_helpers_and_stops_late_tasks() -> None:
    port = free_port()
    server = start(port)
    try:
        status, body = post(port, "/process", {"n": 1000})
        assert status == 200 and body["sum_of_squares"] == sum(i * i for i in range(1000))
        assert post(port, "/process", {"crash": True})[0] == 503
        assert post(port, "/process", {"n": 10})[0] == 200, "the pool serves after a crash"
        pids = set(get(port, "/workers")["pids"])
        t0 = time.monotonic()
        assert post(port, "/process", {"n": 10**10, "deadline": 0.5})[0] == 504
        assert time.monotonic() - t0 < 10
        time.sleep(0.5)
        assert set(get(port, "/workers")["pids"]) != pids, "the late task's helper was killed and replaced"
        batch = post(port, "/batch", [{"n": 100}, {"crash": True}, {"n": 200}])[1]
        assert [b.get("n") for b in batch] == [100, None, 200]

        # Load: 16 concurrent clients while a helper is SIGKILLed every
        # moment or so; no request hangs, failures stay within the kills.
        rng = seeded("web kills")
        seconds, stop = tier(8, 60), threading.Event()
        results: list[int] = []

        def client() -> None:
            while not stop.is_set():
                results.append(post(port, "/process", {"n": rng.randrange(1000, 200_000)}, timeout=60)[0])

        clients = [threading.Thread(target=client) for _ in range(16)]
        for c in clients:
            c.start()
        before = usage(server.pid)
        kills = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.5, 2.0))
            helpers = get(port, "/workers")["pids"]
            if helpers:
                try:
                    os.kill(rng.choice(helpers), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
        stop.set()
        for c in clients:
            c.join(120)
        assert not any(c.is_alive() for c in clients), "a request hung"
        failed = sum(1 for s in results if s != 200)
        assert set(results) <= {200, 503} and failed <= kills, f"{failed} failed for {kills} kills"
        assert len(results) > 16
        after = usage(server.pid)
        assert after[1] <= before[1] + 8, f"open files grew: {before} -> {after}"
        assert after[0] <= before[0] * 1.5 + 20_000, f"memory grew: {before} -> {after}"
        print(f"web: {len(results)} requests, {failed} failed, {kills} kills, rss/fds {before} -> {after}")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=30)
        except Exception:  # noqa: BLE001
            server.kill()
            server.communicate()
