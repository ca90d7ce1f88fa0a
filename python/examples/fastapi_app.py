"""The seeds' FastAPI endpoints on shmkit: CPU work offloaded from the
event loop to a process pool, as in the seed, with what the seed could
not have:

- no fork, ever: helpers are fresh interpreters, so the server's threads
  and sockets are never copied (the seed's dying Gunicorn workers);
- a per-request deadline that cancels the request's task (its helper is
  killed and replaced), where the stdlib pool would run it on;
- a helper killed mid-request (the OOM killer) fails that request alone
  (503) instead of breaking the pool for every later request.

Run: ``python fastapi_app.py [port]``; then ``POST /process`` with a JSON
body ``{"n": 200000}`` (``"deadline": 0.5`` for a deadline in seconds,
``"crash": true`` to kill the helper), or ``POST /batch`` with a list.
"""

import asyncio
import os
import sys

import uvicorn
from fastapi import FastAPI, HTTPException

import shmkit

app = FastAPI()

# Global executor (created once, reused for all requests); its helpers
# start with the first request.
executor = shmkit.ProcessPool(max_workers=4, timeout=30)


def cpu_intensive_work(data: dict) -> dict:
    """Runs in a helper process."""
    if data.get("crash"):
        os._exit(1)  # as a segfault or the OOM killer would end it
    n = int(data.get("n", 100_000))
    return {"n": n, "sum_of_squares": sum(i * i for i in range(n)), "pid": os.getpid()}


async def offload(data: dict) -> dict:
    future = asyncio.wrap_future(executor.submit(cpu_intensive_work, data))
    try:
        return await asyncio.wait_for(future, timeout=data.get("deadline"))  # cancels the task when it expires
    except asyncio.TimeoutError:
        raise HTTPException(status_code=504, detail="deadline passed: the task was stopped") from None
    except shmkit.WorkerDied as e:
        raise HTTPException(status_code=503, detail=f"the worker died: {e}") from None


@app.post("/process")
async def process_endpoint(data: dict):
    return await offload(data)


@app.post("/batch")
async def batch_process(items: list[dict]):
    results = await asyncio.gather(*(offload(d) for d in items), return_exceptions=True)
    return [r if isinstance(r, dict) else {"error": getattr(r, "detail", str(r))} for r in results]


@app.get("/workers")
async def workers():
    return {"pids": executor.helper_pids()}


@app.on_event("shutdown")
def shutdown_event():
    executor.shutdown(wait=False, cancel_futures=True)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000, log_level="warning")
