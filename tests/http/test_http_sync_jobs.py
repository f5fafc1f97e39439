"""POST /sync and GET /jobs/{id} on real Redis and PostgreSQL."""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from finally_indexer.core.settings import Settings
from finally_indexer.schemas.jobs import JobSource
from finally_indexer.schemas.legacy import parse_legacy_job
from finally_indexer.schemas.messages import JobEntry

Client = httpx.AsyncClient


async def test_sync_all_answers_202_and_queues_a_legacy_shaped_job(
    client: Client, redis: aioredis.Redis, pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    started = time.perf_counter()
    res = await client.post("/sync", json={})
    elapsed = time.perf_counter() - started

    assert res.status_code == 202, res.text
    assert elapsed < 0.1
    body = res.json()
    job_id = body["job_id"]
    assert body["status"] == "pending"
    assert res.headers["location"] == f"/jobs/{job_id}" == body["links"]["self"]

    entries: Any = await redis.xrange(settings.jobs_stream)
    [(entry_id, fields)] = entries
    entry = JobEntry.from_fields(fields)
    assert entry.source is JobSource.API
    payload = json.loads(entry.payload)
    assert payload == {
        "v": 1,
        "operation": "sync",
        "product_ids": "all",
        "job_id": job_id,
        "scope": "changed",
        "force": False,
    }
    assert parse_legacy_job(entry.payload).is_all  # the planner reads it like any legacy job

    row: Any = await pool.fetchrow(
        "SELECT status, source, scope, stream_entry_id FROM index_jobs WHERE job_id = $1", job_id
    )
    assert dict(row) == {
        "status": "pending",
        "source": "api",
        "scope": "changed",
        "stream_entry_id": entry_id.decode(),
    }


async def test_sync_ids_records_the_ids_and_scope_ids(client: Client, pool: asyncpg.Pool[Any]) -> None:
    res = await client.post("/sync", json={"product_ids": [5, 3, 5], "operation": "update", "force": True})
    assert res.status_code == 202
    row: Any = await pool.fetchrow("SELECT * FROM index_jobs WHERE job_id = $1", res.json()["job_id"])
    assert (row["scope"], row["product_ids"], row["operation"], row["force"]) == (
        "ids",
        [5, 3],
        "update",
        True,
    )


async def test_sync_validation_errors_are_400_with_a_clear_body(
    client: Client, redis: aioredis.Redis, settings: Settings
) -> None:
    cases: list[Any] = [
        {"product_ids": []},
        {"product_ids": [0]},
        {"product_ids": "some"},
        {"product_ids": ["1"]},
        {"operation": "delete"},  # "all" only with sync
        {"scope": "everything"},
        {"unknown": 1},
        [1, 2],
    ]
    for body in cases:
        res = await client.post("/sync", json=body)
        assert res.status_code == 400, (body, res.text)
        err = res.json()
        assert err["error"] == "validation_error"
        assert err["status_code"] == 400
        assert "Traceback" not in res.text
    res = await client.post("/sync", content=b"{not json", headers={"content-type": "application/json"})
    assert res.status_code == 400
    assert await redis.xlen(settings.jobs_stream) == 0


async def test_get_job_reports_progress_summed_over_batches(client: Client, pool: asyncpg.Pool[Any]) -> None:
    job_id = (await client.post("/sync", json={"product_ids": list(range(1, 21))})).json()["job_id"]
    await pool.execute(
        "UPDATE index_jobs SET status = 'running', total = 20, batches = 3, planned_at = now() WHERE job_id = $1",
        job_id,
    )
    await pool.executemany(
        "INSERT INTO index_job_batches (job_id, seq, operation, product_ids, status, indexed, skipped, deleted, failed)"
        " VALUES ($1, $2, 'sync', $3, $4, $5, $6, $7, $8)",
        [
            (job_id, 0, list(range(1, 9)), "done", 5, 2, 0, 1),
            (job_id, 1, list(range(9, 17)), "done", 8, 0, 0, 0),
            (job_id, 2, list(range(17, 21)), "pending", 0, 0, 0, 0),
        ],
    )

    body = (await client.get(f"/jobs/{job_id}")).json()

    assert body["status"] == "running"
    assert body["progress"] == {
        "total": 20,
        "done": 13,
        "skipped": 2,
        "deleted": 0,
        "failed": 1,
        "batches": 3,
        "batches_done": 2,
        "percent": 80.0,
    }
    assert body["planned_at"] is not None
    assert body["finished_at"] is None


async def test_unknown_job_is_404(client: Client) -> None:
    res = await client.get("/jobs/api-nope")
    assert res.status_code == 404
    assert res.json()["error"] == "not_found"
