"""The README's first command, timed: ``finally-indexer up`` on a fresh data dir.

Runs the real console script (its own Redis and PostgreSQL, the edge store, the hashing embedder
at 3072 dimensions) in a throwaway folder and prints:

- the seed load (between the ``dev_products_ready`` and ``demo_seeded`` log lines);
- the start-up sync (the job's ``created_at`` → ``finished_at`` on ``/status``);
- a ``sync "all"`` LPUSHed again with nothing changed (same timestamps, and how many were skipped);
- Ctrl-C (SIGINT) until the process and its servers have exited.

Run: ``python bench/up.py --listings 30000``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from finally_indexer.devenv._process import free_port

TIMEOUT_S = 600.0


def _until(predicate: Any) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("finally-indexer up did not get there in time")


def _finished_job(api: str, count: int) -> dict[str, Any] | None:
    """The newest job once ``count`` jobs exist and none is pending or running."""
    jobs = httpx.get(f"{api}/status", timeout=10).json()["jobs"]
    done = len(jobs) >= count and all(j["status"] == "completed" for j in jobs)
    return jobs[0] if done else None


def _seconds(job: dict[str, Any]) -> float:
    return (
        datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])
    ).total_seconds()


def _log_time(log: Path, event: str) -> datetime:
    for line in log.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("event") == event:
            return datetime.fromisoformat(json.loads(line)["timestamp"])
    raise LookupError(event)


def main(listings: int) -> None:
    cli = str(Path(sys.executable).with_name("finally-indexer"))
    http_port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "VECTOR_STORE", "EMBEDDER"}}
    env |= {"HTTP_PORT": str(http_port), "LOG_FORMAT": "json"}
    api = f"http://127.0.0.1:{http_port}"
    with tempfile.TemporaryDirectory(prefix="bench-up-", dir=".") as root:
        log = Path(root) / "up.log"
        args = ["up", "--data-dir", root, "--seed-count", str(listings)]
        args += ["--redis-port", str(redis_port), "--postgres-port", str(free_port())]
        with log.open("wb") as out:
            proc = subprocess.Popen([cli, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                first = _until(lambda: _finished_job(api, 1))
                client = redis.Redis(port=redis_port)
                client.lpush("indexing_jobs", json.dumps({"operation": "sync", "product_ids": "all"}))
                client.close()
                again = _until(lambda: _finished_job(api, 2))
                started = time.perf_counter()
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=120)
                stopped = time.perf_counter() - started
            finally:
                if proc.poll() is None:
                    proc.kill()
        seed = (_log_time(log, "demo_seeded") - _log_time(log, "dev_products_ready")).total_seconds()
    print(f"# up bench: {listings} listings, edge store, hashing embedder, 3072 dims")
    print(f"seed load (COPY)                  {seed:6.1f} s")
    print(
        f"start-up sync                     {_seconds(first):6.1f} s   ({first['progress']['done']:,} embedded)"
    )
    print(
        f'sync "all" again, nothing changed {_seconds(again):6.1f} s   ({again["progress"]["skipped"]:,} skipped)'
    )
    print(f"Ctrl-C to every process stopped   {stopped:6.1f} s   (exit code {proc.returncode})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listings", type=int, default=30_000)
    main(parser.parse_args().listings)
