"""Every malformed shape ends in the dead letters with a readable reason; valid jobs around it all run."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from pipeline.helpers import add_listings, assert_converged, entries, events, push
from redis.asyncio import Redis

from finally_indexer.core.constants import MAX_IDS_PER_JOB
from finally_indexer.core.settings import Settings
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.messages import EventType

MALFORMED: list[tuple[bytes, str]] = [
    (b"{not json", "bad_json"),
    (b"\xff\xfe\x00garbage", "not_utf8"),
    (b"[1, 2, 3]", "not_an_object"),
    (json.dumps({"operation": "reindex", "product_ids": [1]}).encode(), "unknown_operation"),
    (json.dumps({"operation": "sync", "product_ids": "some"}).encode(), "bad_product_ids"),
    (json.dumps({"operation": "sync", "product_ids": [1, "2"]}).encode(), "bad_product_ids"),
    (json.dumps({"operation": "sync", "product_ids": [2**63]}).encode(), "bad_product_ids"),
    (json.dumps({"operation": "sync", "product_ids": []}).encode(), "empty_product_ids"),
    (
        json.dumps({"operation": "sync", "product_ids": list(range(1, MAX_IDS_PER_JOB + 2))}).encode(),
        "too_many_product_ids",
    ),
    (json.dumps({"operation": "delete", "product_ids": "all"}).encode(), "invalid"),
    (json.dumps({"operation": "sync", "product_ids": [1], "force": "yes"}).encode(), "invalid"),
    (json.dumps({"product_ids": [1]}).encode(), "unknown_operation"),
]


async def test_malformed_jobs_are_dead_lettered_and_valid_ones_processed(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings
) -> None:
    await add_listings(pool, 1, 20)
    for i, (raw, _) in enumerate(MALFORMED):
        await push(redis, settings, raw)
        await push(redis, settings, {"operation": "sync", "product_ids": [i + 1]})
    await push(redis, settings, {"operation": "sync", "product_ids": list(range(len(MALFORMED) + 1, 21))})

    await pipeline.drain()

    dead = await entries(redis, settings.dead_letter_stream)
    assert [(f[b"payload"], f[b"dl_reason"].decode()) for _, f in dead] == MALFORMED
    assert all(f[b"dl_error"] and f[b"dl_origin_stream"] == settings.jobs_stream.encode() for _, f in dead)
    rows = await pool.fetch(
        "SELECT reason, payload, error_message, entry_id FROM failed_operations ORDER BY id"
    )
    assert [(bytes(r["payload"]), r["reason"]) for r in rows] == MALFORMED
    assert all(r["error_message"] and r["entry_id"] for r in rows)
    found = await events(redis, settings)
    assert sum(e.type is EventType.JOB_MALFORMED for e in found) == len(MALFORMED)
    await assert_converged(pool, store, settings)
    assert (await redis.xpending(settings.jobs_stream, "planner"))["pending"] == 0


@pytest.mark.parametrize(
    "fields",
    [{b"job_id": b"x"}, {b"job_id": b"x", b"seq": b"0", b"operation": b"sync", b"product_ids": b"[]"}],
)
async def test_unreadable_batch_entry_is_dead_lettered_alone(
    pipeline: Pipeline, redis: Redis, settings: Settings, fields: dict[bytes, bytes]
) -> None:
    pool, store = pipeline.pool, pipeline.store
    await add_listings(pool, 1, 10)
    await redis.xadd(settings.batch_stream, fields)  # type: ignore[arg-type]
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await pipeline.drain()
    await assert_converged(pool, store, settings)
    assert await pool.fetchval("SELECT count(*) FROM failed_operations WHERE reason = 'invalid_batch'") == 1
    assert await redis.xlen(settings.dead_letter_stream) == 1
