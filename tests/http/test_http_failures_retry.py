"""GET /failures and POST /retry on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from app_client import serve_in_loop

from finally_indexer.core.settings import Settings
from finally_indexer.db.pool import create_pool
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.schemas.jobs import JobSource
from finally_indexer.schemas.messages import JobEntry

_INSERT = """
INSERT INTO failed_operations (operation_type, product_id, reason, error_class, error_message, payload, created_at)
VALUES ($1, $2, $3, $4, $5, $6, now() - make_interval(mins => $7)) RETURNING id
"""


async def _fail(
    pool: asyncpg.Pool[Any],
    op: str,
    pid: int | None,
    reason: str,
    *,
    payload: bytes | None = None,
    minutes_ago: int = 0,
) -> int:
    return int(
        await pool.fetchval(_INSERT, op, pid, reason, "SomeError", f"{reason} on {pid}", payload, minutes_ago)
    )


async def _seed(pool: asyncpg.Pool[Any]) -> dict[str, int]:
    return {
        "u1": await _fail(pool, "update", 11, "EmbeddingInputRejected", minutes_ago=30),
        "u2": await _fail(pool, "update", 12, "EmbeddingInputRejected", minutes_ago=20),
        "d1": await _fail(pool, "delete", 13, "max_deliveries", minutes_ago=10),
        "bad": await _fail(pool, "job", None, "bad_json", payload=b'{"operation": sync}', minutes_ago=5),
        "bin": await _fail(pool, "job", None, "not_utf8", payload=b"\xff\xfe\x00", minutes_ago=1),
    }


async def test_failures_page_filters_and_summary(client: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> None:
    ids = await _seed(pool)
    await pool.execute(
        "UPDATE failed_operations SET resolved_at = now(), resolution = 'succeeded' WHERE id = $1", ids["u1"]
    )

    body = (await client.get("/failures", params={"limit": 2})).json()
    assert [i["id"] for i in body["items"]] == [ids["bin"], ids["bad"]]
    assert body["total"] == 5
    assert body["next_before_id"] == ids["bad"]
    by_reason = {g["reason"]: g for g in body["by_reason"]}
    assert by_reason["EmbeddingInputRejected"]["count"] == 2
    assert by_reason["EmbeddingInputRejected"]["open"] == 1
    assert by_reason["EmbeddingInputRejected"]["operation_types"] == ["update"]

    rest = (await client.get("/failures", params={"limit": 10, "before_id": body["next_before_id"]})).json()
    assert [i["id"] for i in rest["items"]] == [ids["d1"], ids["u2"], ids["u1"]]
    assert rest["next_before_id"] is None

    items = {i["id"]: i for i in body["items"]}
    assert items[ids["bad"]]["payload"] == '{"operation": sync}'
    assert items[ids["bad"]]["payload_encoding"] == "utf-8"
    assert items[ids["bin"]]["payload_encoding"] == "base64"
    assert base64.b64decode(items[ids["bin"]]["payload"]) == b"\xff\xfe\x00"

    only_open = (
        await client.get("/failures", params={"open": "true", "reason": "EmbeddingInputRejected"})
    ).json()
    assert [i["id"] for i in only_open["items"]] == [ids["u2"]]
    by_product = (await client.get("/failures", params={"product_id": 13, "operation_type": "delete"})).json()
    assert [i["id"] for i in by_product["items"]] == [ids["d1"]]


async def test_failures_rejects_bad_parameters(client: httpx.AsyncClient) -> None:
    for params in (
        {"limit": 0},
        {"limit": 501},
        {"before_id": -1},
        {"since": "yesterday"},
        {"product_id": "x"},
    ):
        res = await client.get("/failures", params=params)
        assert res.status_code == 400, params
        assert res.json()["error"] == "validation_error"


async def test_retry_requeues_listings_by_operation_and_replays_raw_jobs(
    client: httpx.AsyncClient, pool: asyncpg.Pool[Any], redis: aioredis.Redis, settings: Settings
) -> None:
    ids = await _seed(pool)

    res = await client.post("/retry", json={"all": True})

    assert res.status_code == 200, res.text
    body = res.json()
    assert body["requeued"] == 5
    assert body["replayed_payloads"] == 2
    assert len(body["job_ids"]) == 2  # one job for the updates, one for the delete

    raw_entries: Any = await redis.xrange(settings.jobs_stream)
    entries = [JobEntry.from_fields(f) for _, f in raw_entries]
    jobs = [json.loads(e.payload) for e in entries if e.payload.startswith(b'{"v"')]
    assert all(e.source is JobSource.RETRY for e in entries if e.payload.startswith(b'{"v"'))
    assert all(e.source is JobSource.LEGACY for e in entries if not e.payload.startswith(b'{"v"'))
    assert sorted((j["operation"], j["product_ids"]) for j in jobs) == [
        ("delete", [13]),
        ("update", [11, 12]),
    ]
    assert {j["job_id"] for j in jobs} == set(body["job_ids"])
    raw = {e.payload for e in entries} - {json.dumps(j, separators=(",", ":")).encode() for j in jobs}
    assert raw == {b'{"operation": sync}', b"\xff\xfe\x00"}  # byte for byte

    rows = await pool.fetch(
        "SELECT id, retry_count, requeued_at, resolution, resolved_at FROM failed_operations ORDER BY id"
    )
    assert len(rows) == 5  # history is kept
    assert all(
        r["retry_count"] == 1 and r["requeued_at"] is not None and r["resolution"] == "requeued" for r in rows
    )
    assert all(r["resolved_at"] is not None for r in rows)  # handled: no longer open
    job_rows = await pool.fetch(
        "SELECT source, scope, status FROM index_jobs WHERE job_id = ANY($1)", body["job_ids"]
    )
    assert {tuple(r) for r in job_rows} == {("retry", "ids", "pending")}

    # a second "all" finds nothing open: the same failures are never re-queued twice
    assert (await client.post("/retry", json={"all": True})).json()["requeued"] == 0
    # naming a row re-queues it again, whatever its state (an operator's explicit request)
    again = (await client.post("/retry", json={"ids": [ids["u1"]]})).json()
    assert again["requeued"] == 1
    assert await pool.fetchval("SELECT retry_count FROM failed_operations WHERE id = $1", ids["u1"]) == 2


async def test_unreplayable_batch_rows_are_discarded_and_never_block_retry_all(
    client: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    # an unreadable batch entry is dead-lettered as operation_type 'batch': no listing, no job
    batch_rows = [await _fail(pool, "batch", None, "invalid_batch", minutes_ago=60 - i) for i in range(3)]
    listing = await _fail(pool, "update", 21, "EmbeddingInputRejected")

    first = (await client.post("/retry", json={"all": True, "limit": 3})).json()
    second = (await client.post("/retry", json={"all": True, "limit": 3})).json()

    rows = await pool.fetch("SELECT id, resolution FROM failed_operations WHERE resolved_at IS NOT NULL")
    assert {r["id"]: r["resolution"] for r in rows} == {
        **dict.fromkeys(batch_rows, "discarded"),
        listing: "requeued",
    }
    assert (first["requeued"], first["discarded"]) == (0, 3)
    assert (second["requeued"], second["discarded"]) == (1, 0)


async def test_retry_filters_combine(
    client: httpx.AsyncClient, pool: asyncpg.Pool[Any], redis: aioredis.Redis, settings: Settings
) -> None:
    ids = await _seed(pool)
    res = (await client.post("/retry", json={"operation_type": "update", "since": _ago(25)})).json()
    assert res["requeued"] == 1
    assert await pool.fetchval("SELECT retry_count FROM failed_operations WHERE id = $1", ids["u2"]) == 1
    assert await pool.fetchval("SELECT retry_count FROM failed_operations WHERE id = $1", ids["u1"]) == 0

    res = (await client.post("/retry", json={"reason": "nothing-like-this"})).json()
    assert res == {"requeued": 0, "job_ids": [], "replayed_payloads": 0, "discarded": 0}
    res = (await client.post("/retry", json={"product_ids": [13], "until": _ago(0)})).json()
    assert res["requeued"] == 1
    assert await redis.xlen(settings.jobs_stream) == 2


async def test_retry_needs_a_filter_or_all(client: httpx.AsyncClient) -> None:
    for body in (
        {},
        {"all": False},
        {"ids": [0]},
        {"since": _ago(0), "until": _ago(5)},
        {"operation_type": "nope"},
    ):
        res = await client.post("/retry", json=body)
        assert res.status_code == 400, body
        assert res.json()["error"] == "validation_error"


async def test_concurrent_retries_all_complete_on_a_pool_of_two(
    settings: Settings, pg_schema: str, redis: aioredis.Redis, deps: AppDeps
) -> None:
    """More concurrent retries than pooled connections: each needs one connection, none waits forever."""
    small = await create_pool(
        settings.model_copy(update={"db_pool_max": 2, "db_pool_min": 0}), schema=pg_schema
    )
    reasons = {f"reason-{n}": [100 * n + 1, 100 * n + 2] for n in range(1, 5)}
    for reason, product_ids in reasons.items():
        for pid in product_ids:
            await _fail(small, "update", pid, reason)
    app = create_app(settings, deps=AppDeps(pool=small, redis=redis, store=deps.store))
    try:
        async with serve_in_loop(app) as client:
            calls = (client.post("/retry", json={"reason": reason}) for reason in reasons)
            responses = await asyncio.wait_for(asyncio.gather(*calls), 30)

        for reason, res in zip(reasons, responses, strict=True):
            assert res.status_code == 200, res.text
            job_ids = res.json()["job_ids"]
            queued = await small.fetch("SELECT product_ids FROM index_jobs WHERE job_id = ANY($1)", job_ids)
            assert [sorted(r["product_ids"]) for r in queued] == [reasons[reason]], reason
        marked = await small.fetch(
            "SELECT reason, bool_and(requeued_at IS NOT NULL AND resolution = 'requeued') AS done"
            " FROM failed_operations GROUP BY reason"
        )
        assert {r["reason"]: r["done"] for r in marked} == dict.fromkeys(reasons, True)
    finally:
        await small.close()


def _ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()
