"""GET /failures shows the first bytes of a raw payload, so a page stays small whatever producers sent."""

from __future__ import annotations

import base64
from typing import Any

import asyncpg
import httpx

from finally_indexer.db.failures import PAYLOAD_PREVIEW_BYTES

INSERT = """
INSERT INTO failed_operations (operation_type, reason, error_class, error_message, payload)
VALUES ('job', 'bad_json', 'MalformedJob', 'bad_json: ...', $1) RETURNING id
"""


async def _shown(client: httpx.AsyncClient, pool: asyncpg.Pool[Any], payload: bytes) -> dict[str, Any]:
    row_id = await pool.fetchval(INSERT, payload)
    items = (await client.get("/failures", params={"limit": 50})).json()["items"]
    item: dict[str, Any] = next(i for i in items if i["id"] == row_id)
    return item


async def test_a_huge_payload_is_previewed(client: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> None:
    item = await _shown(client, pool, b'{"operation": "sync", "product_ids": [' + b"1," * 50_000)
    assert item["payload_truncated"] is True
    assert item["payload_bytes"] == 38 + 100_000
    assert item["payload_encoding"] == "utf-8"
    assert len(item["payload"]) == PAYLOAD_PREVIEW_BYTES
    # the whole payload is still stored for replay
    assert (
        await pool.fetchval("SELECT octet_length(payload) FROM failed_operations WHERE id = $1", item["id"])
        == 100_038
    )


async def test_a_preview_cut_inside_a_korean_character_stays_text(
    client: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    item = await _shown(client, pool, b"x" + "혼다".encode() * 3000)  # 3-byte characters, offset by one
    assert item["payload_encoding"] == "utf-8"
    assert item["payload"].startswith("x혼다")
    assert len(item["payload"].encode()) <= PAYLOAD_PREVIEW_BYTES


async def test_small_payloads_are_shown_whole(client: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> None:
    text = await _shown(client, pool, b'{"operation": 1}')
    assert (text["payload"], text["payload_truncated"], text["payload_bytes"]) == (
        '{"operation": 1}',
        False,
        16,
    )
    binary = await _shown(client, pool, b"\xff\xfe\x00")
    assert binary["payload_encoding"] == "base64"
    assert base64.b64decode(binary["payload"]) == b"\xff\xfe\x00"
