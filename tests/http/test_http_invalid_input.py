"""Input that passes route validation but PostgreSQL refuses (a NUL byte in text) is a 400, never a 500."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from finally_indexer.core.settings import Settings


async def test_a_nul_byte_in_a_failures_filter_is_400_invalid_input(client: httpx.AsyncClient) -> None:
    res = await client.get("/failures", params={"reason": "a\x00b"})
    assert res.status_code == 400, res.text
    body = res.json()
    assert (body["status_code"], body["error"]) == (400, "invalid_input")
    assert "Traceback" not in res.text


@pytest.mark.parametrize(
    ("path", "params", "detail"),
    [
        (
            "/failures",
            {"reason": "a\x00b"},
            "a text value holds a character that cannot be stored (such as NUL)",
        ),
        ("/jobs/%00", {}, "a text value holds a character that cannot be stored (such as NUL)"),
    ],
)
async def test_a_refused_value_is_told_in_a_fixed_sentence_not_postgres_words(
    client: httpx.AsyncClient, path: str, params: dict[str, str], detail: str
) -> None:
    """PostgreSQL's message (encodings, bytes, internals) stays in the log; the client gets one
    short sentence saying which kind of value was refused."""
    res = await client.get(path, params=params)
    assert res.status_code == 400, res.text
    body = res.json()
    assert body["detail"] == detail
    assert "UTF8" not in res.text
    assert "0x00" not in res.text


async def test_a_nul_byte_as_a_job_id_is_not_a_server_error(client: httpx.AsyncClient) -> None:
    res = await client.get("/jobs/%00")
    assert res.status_code in (400, 404), res.text


@pytest.mark.parametrize(
    ("path", "body"),
    [("/retry", {"reason": "a\x00b"}), ("/sync", {"product_ids": [1], "requested_by": "a\x00b"})],
)
async def test_a_nul_byte_in_a_command_is_400_and_queues_nothing(
    *,
    client: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    redis: aioredis.Redis,
    settings: Settings,
    path: str,
    body: dict[str, Any],
) -> None:
    res = await client.post(path, json=body)
    assert res.status_code == 400, res.text
    assert res.json()["error"] == "invalid_input"
    assert await redis.xlen(settings.jobs_stream) == 0
    assert await pool.fetchval("SELECT count(*) FROM index_jobs") == 0
