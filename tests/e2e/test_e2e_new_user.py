"""Tried as a new user would: the README's first command running, the seed's jobs pushed with LPUSH.

``finally-indexer up`` runs as a subprocess on its embedded defaults (its own Redis and
PostgreSQL, Qdrant's in-process engine, the offline embedder, 3072 dimensions). The scraper's side
is played with plain redis-py and SQL: it edits, inserts and deletes rows, then LPUSHes the seed's
example jobs. After a clean Ctrl-C, the collection on disk must hold exactly the (id, text hash)
pairs PostgreSQL says it should, and ``is_conversion`` must agree.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from finally_indexer.core.settings import DEFAULT_TEXT_TEMPLATE, load_settings
from finally_indexer.devenv._process import free_port
from finally_indexer.devenv.servers import dev_servers
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.texts import build_text, text_hash

pytestmark = pytest.mark.slow

SEED_COUNT = 300
#: Generous bounds for a loaded 2-core machine; the test polls and returns as soon as it converges.
START_TIMEOUT_S = 180.0
CONVERGE_TIMEOUT_S = 180.0


def _cli() -> str:
    script = Path(sys.executable).with_name("finally-indexer")
    assert script.exists(), "the console script is installed with the package"
    return str(script)


def _wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (httpx.HTTPError, redis.RedisError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def _idle(api: str) -> dict[str, Any] | None:
    """The /status document once nothing is queued, pending or running; None before."""
    status = httpx.get(f"{api}/status", timeout=5).json()
    queues = status["queues"]
    busy = queues["legacy_list_length"] or any(
        s["group"]["lag"] or s["group"]["pending"] for s in queues["streams"]
    )
    running = [j for j in status["jobs"] if j["status"] in ("pending", "running")]
    return None if busy or running or status["listings"]["pending"] else status


async def _scraper_changes(dsn: str) -> dict[str, int]:
    """What the scraper does between jobs: edit one row, insert one, delete one."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE products SET content = content || ' (가격 조정)', price = price - 100000,"
            " updated_at = now() WHERE id = 123"
        )
        await conn.execute("UPDATE products SET title = title || ' 급매', updated_at = now() WHERE id = 5")
        new_id = await conn.fetchval(
            "INSERT INTO products (title, price, content, mileage, brand, year, url)"
            " VALUES ('혼다 PCX125 2023년식 신차급', 3200000, '무사고 풀정비', 1200, 'Honda', 2023,"
            " 'https://example.invalid/p/new') RETURNING id"
        )
        await conn.execute("DELETE FROM products WHERE id = 77")
        return {"new": int(new_id)}
    finally:
        await conn.close()


async def _expected(dsn: str) -> tuple[dict[int, str], int]:
    """(id -> text hash) PostgreSQL says should be searchable, and how many rows are not flagged."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT * FROM products")
        unflagged = await conn.fetchval("SELECT count(*) FROM products WHERE NOT is_conversion")
    finally:
        await conn.close()
    return {int(r["id"]): text_hash(build_text(dict(r), DEFAULT_TEXT_TEMPLATE)) for r in rows}, int(unflagged)


def test_seed_jobs_pushed_with_lpush_converge(server_dir: Path) -> None:
    redis_port, pg_port, http_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "VECTOR_STORE", "EMBEDDER"}}
    env |= {"HTTP_PORT": str(http_port), "LOG_FORMAT": "json"}
    args = ["up", "--data-dir", str(server_dir), "--seed-count", str(SEED_COUNT)]
    args += ["--redis-port", str(redis_port), "--postgres-port", str(pg_port)]
    log_path = server_dir / "up.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([_cli(), *args], env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _drive(proc, http_port, redis_port, pg_port)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, log_path.read_text()[-3000:]

    # Everything is stopped and on disk; reopen it as an auditor would.
    expected, unflagged, stored = asyncio.run(_audit(server_dir, redis_port, pg_port))
    assert 77 not in stored
    assert len(expected) == SEED_COUNT  # 300 seeded, one inserted, one deleted
    assert stored == expected
    assert unflagged == 0


async def _audit(
    server_dir: Path, redis_port: int, pg_port: int
) -> tuple[dict[int, str], int, dict[int, str]]:
    async with dev_servers(server_dir, redis_port=redis_port, postgres_port=pg_port) as urls:
        expected, unflagged = await _expected(urls.postgres_dsn)
    # the served name: the generation the pointer file names, as every reader resolves it
    store = build_vector_store(load_settings(qdrant_path=server_dir / "qdrant"))
    try:
        stored = {x.product_id: x.text_hash async for x in store.scan()}
    finally:
        await store.aclose()
    return expected, unflagged, stored


def _drive(proc: subprocess.Popen[bytes], http_port: int, redis_port: int, pg_port: int) -> None:
    api = f"http://127.0.0.1:{http_port}"
    _wait_for(lambda: httpx.get(f"{api}/health", timeout=5).status_code == 200, START_TIMEOUT_S, "/health")
    # ``up`` queued the start-up sync itself: the demo listings get indexed with no action of ours.
    first = _wait_for(lambda: _idle(api), CONVERGE_TIMEOUT_S, "the start-up sync")
    assert first["listings"]["indexed"] == SEED_COUNT

    dsn = f"postgresql://postgres@127.0.0.1:{pg_port}/finally"
    ids = asyncio.run(_scraper_changes(dsn))
    r = redis.Redis(port=redis_port)
    try:
        r.lpush("indexing_jobs", json.dumps({"operation": "sync", "product_ids": [1, 2, 3]}))
        r.lpush("indexing_jobs", json.dumps({"operation": "sync", "product_ids": [ids["new"]]}))
        r.lpush("indexing_jobs", json.dumps({"operation": "update", "product_ids": [123]}))
        r.lpush("indexing_jobs", json.dumps({"operation": "delete", "product_ids": [77]}))
        r.lpush("indexing_jobs", json.dumps({"operation": "sync", "product_ids": "all"}))
    finally:
        r.close()
    final = _wait_for(lambda: _idle(api), CONVERGE_TIMEOUT_S, "the pushed jobs")
    assert final["listings"]["indexed"] == final["listings"]["total"] == SEED_COUNT
    assert final["failures_open"] == 0

    proc.send_signal(signal.SIGINT)  # Ctrl-C
    proc.wait(timeout=90)
