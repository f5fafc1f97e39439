"""Poison on the legacy list: whatever the bytes, each payload is recorded once, acked, and the jobs
around it run (issue 9 item 1).

Before, a payload the parser could not even raise ``MalformedJob`` for (nested 10,000 deep, a
6,000-digit integer, a NUL or a lone surrogate in ``job_id``) was treated as transient; at
``MAX_DELIVERIES`` the dead letter re-parsed it and raised again, so it was never acked, the
dead-letter stream grew on every reclaim and ``failed_operations`` never got a row.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg
import pytest
from pipeline.helpers import OpenPipeline, add_listings, entries, events, push
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamEntry
from finally_indexer.processor.deadletter import DeadLetters
from finally_indexer.processor.events import EventLog
from finally_indexer.schemas.legacy import KEPT_PAYLOAD_BYTES
from finally_indexer.schemas.messages import EventType

POISON: list[tuple[bytes, str]] = [
    (b"[" * 10_000, "too_deep"),
    (b'{"operation":"sync","product_ids":[1],"job_id":"a\\u0000b"}', "bad_text"),
    (b'{"operation":"sync","product_ids":[' + b"9" * 6_000 + b"]}", "bad_json"),
    (b'{"operation":"sync","product_ids":[1],"job_id":"\\ud800"}', "bad_text"),
    (b'{"operation":"sync","product_ids":[1],"requested_by":"x\\udfff"}', "bad_text"),
]


async def _rows(pool: asyncpg.Pool[Any]) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM failed_operations ORDER BY id")


@pytest.mark.parametrize(("raw", "reason"), POISON, ids=[r for _, r in POISON])
async def test_poison_is_recorded_once_and_acked(
    *, open_pipeline: OpenPipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings,
    raw: bytes, reason: str,
) -> None:  # fmt: skip
    pipeline = await open_pipeline(max_deliveries=2, reclaim_idle_ms=100)
    await add_listings(pool, 1, 3)
    await push(redis, settings, raw)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})

    await pipeline.drain(timeout_s=20)

    rows = await _rows(pool)
    assert [(r["reason"], bytes(r["payload"])) for r in rows] == [(reason, raw)]
    assert [f[b"dl_reason"].decode() for _, f in await entries(redis, settings.dead_letter_stream)] == [
        reason
    ]
    assert (await redis.xpending(settings.jobs_stream, "planner"))["pending"] == 0
    assert await pool.fetchval("SELECT count(*) FROM index_jobs WHERE status = 'completed'") == 1


async def test_an_over_size_payload_is_kept_truncated_with_its_size_and_hash(
    pipeline: Any, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    """5 MB of 1,000,000 non-integer ids: one short record, not a 63 MB error text."""
    raw = json.dumps({"operation": "sync", "product_ids": ["x"] * 1_000_000}).encode()
    assert len(raw) > settings.legacy_payload_max_bytes
    await push(redis, settings, raw)

    await pipeline.drain(timeout_s=20)

    [row] = await _rows(pool)
    assert row["reason"] == "payload_too_large"
    assert bytes(row["payload"]) == raw[:KEPT_PAYLOAD_BYTES]
    assert str(len(raw)) in row["error_message"]
    assert hashlib.sha256(raw).hexdigest() in row["error_message"]
    assert len(row["error_message"]) < 1000
    [(_, dead)] = await entries(redis, settings.dead_letter_stream)
    assert dead[b"payload"] == raw[:KEPT_PAYLOAD_BYTES]
    [event] = [e for e in await events(redis, settings) if e.type is EventType.JOB_MALFORMED]
    assert event.message is not None
    assert len(event.message) < 1000


async def test_validation_errors_are_capped(
    pipeline: Any, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    raw = json.dumps({"operation": "sync", "product_ids": ["x" * 200_000]}).encode()
    await push(redis, settings, raw)

    await pipeline.drain(timeout_s=20)

    [row] = await _rows(pool)
    assert row["reason"] == "bad_product_ids"
    assert len(row["error_message"]) <= 4096


def _dead_letters(redis: Redis, pool: asyncpg.Pool[Any], settings: Settings) -> DeadLetters:
    return DeadLetters(
        redis, pool, EventLog(redis, settings.events_stream), stream=settings.dead_letter_stream
    )


@pytest.mark.parametrize(("raw", "_reason"), POISON, ids=[r for _, r in POISON])
async def test_exhausted_poison_is_dead_lettered_once_even_when_redelivered(
    *, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings, raw: bytes, _reason: str
) -> None:
    """The dead-letter step cannot raise, and a redelivery after a crash before the ack adds nothing."""
    dead = _dead_letters(redis, pool, settings)
    entry = StreamEntry(settings.jobs_stream, "1-1", {b"payload": raw, b"source": b"legacy"})

    await dead.exhausted_job(entry, 4, "RecursionError: a\x00b \ud800")
    await dead.exhausted_job(entry, 5, "RecursionError: again")

    rows = await _rows(pool)
    assert [(r["reason"], r["entry_id"]) for r in rows] == [("max_deliveries", "1-1")]
    assert "\\0" in rows[0]["error_message"]
    assert len(await entries(redis, settings.dead_letter_stream)) == 1


async def test_a_malformed_job_redelivered_after_a_crash_is_not_recorded_twice(
    redis: Redis, pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    from finally_indexer.core.errors import MalformedJob  # noqa: PLC0415

    dead = _dead_letters(redis, pool, settings)
    entry = StreamEntry(settings.jobs_stream, "2-1", {b"payload": b"{bad"})
    for _ in range(2):
        await dead.malformed_job(entry, MalformedJob("bad_json", "not valid JSON"))

    assert len(await _rows(pool)) == 1
    assert len(await entries(redis, settings.dead_letter_stream)) == 1


async def test_an_unparseable_batch_redelivered_is_dead_lettered_once(
    redis: Redis, pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    dead = _dead_letters(redis, pool, settings)
    entry = StreamEntry(settings.batch_stream, "3-1", {b"job_id": b"j\x00", b"seq": b"\xff"})
    for n in (4, 5):
        await dead.exhausted_batch(entry, n, None)

    assert [r["reason"] for r in await _rows(pool)] == ["invalid_batch"]
    assert len(await entries(redis, settings.dead_letter_stream)) == 1
