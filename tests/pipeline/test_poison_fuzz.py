"""Fuzz of the legacy list: random bytes and JSON of odd shapes. Every payload is either processed
or recorded exactly once (one ``failed_operations`` row, one dead letter), and nothing stays pending."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline.helpers import push
from redis.asyncio import Redis

from finally_indexer.core.errors import MalformedJob
from finally_indexer.core.settings import Settings
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.schemas.messages import read_job

_ODD_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", "all", "ids", "changed", "", "9" * 5000]),
)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), _ODD_TEXT
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_ODD_TEXT, inner, max_size=4),
    max_leaves=12,
)
_JOBS = st.fixed_dictionaries(
    {
        "operation": st.sampled_from(["sync", "update", "delete", "reindex"]) | _JSON,
        "product_ids": st.just("all")
        | st.lists(st.integers(min_value=-2, max_value=2**64), max_size=4)
        | _JSON,
    },
    optional={"job_id": _JSON, "requested_by": _JSON, "force": _JSON, "scope": _JSON, "v": _JSON},
).map(lambda job: json.dumps(job).encode())
_PAYLOADS = st.one_of(
    st.binary(max_size=64),
    _JSON.map(lambda value: json.dumps(value).encode()),
    _JOBS,
    st.integers(min_value=900, max_value=20_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=4_000, max_value=8_000).map(
        lambda n: b'{"operation":"sync","product_ids":[' + b"7" * n + b"]}"
    ),
)


def _is_bad(raw: bytes, limit: int) -> bool:
    try:
        read_job({b"payload": raw, b"source": b"legacy"}, "0-1", max_bytes=limit)
    except MalformedJob:
        return True
    return False


async def _count(pool: asyncpg.Pool[Any], redis: Redis, settings: Settings) -> tuple[int, int, int]:
    rows = await pool.fetchval("SELECT count(*) FROM failed_operations WHERE operation_type = 'job'")
    jobs = await pool.fetchval("SELECT count(*) FROM index_jobs")
    return rows, await redis.xlen(settings.dead_letter_stream), jobs


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payloads=st.lists(_PAYLOADS, min_size=1, max_size=8))
async def test_every_payload_is_processed_or_recorded_once(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings, payloads: list[bytes]
) -> None:
    rows_before, dead_before, jobs_before = await _count(pool, redis, settings)
    for raw in payloads:
        await push(redis, settings, raw)

    await pipeline.drain(timeout_s=30)

    bad = sum(_is_bad(raw, settings.legacy_payload_max_bytes) for raw in payloads)
    rows, dead, jobs = await _count(pool, redis, settings)
    assert (rows - rows_before, dead - dead_before) == (bad, bad)
    assert jobs - jobs_before == len(payloads) - bad
    for stream, group in ((settings.jobs_stream, "planner"), (settings.batch_stream, "indexer")):
        assert (await redis.xpending(stream, group))["pending"] == 0
