"""Hostile input gets a clear 4xx, never a 500 (issue 9 item 6): deep JSON, out-of-range times, huge numbers."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"product_ids": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"product_ids": [' + b"9" * 6_000 + b"]}",
        b'{"product_ids": [1e400]}',
        b'{"product_ids": [1], "requested_by": "\\ud800"}',
    ],
    ids=["deep", "deep-field", "huge-int", "huge-float", "lone-surrogate"],
)
async def test_a_hostile_sync_body_is_a_4xx(client: httpx.AsyncClient, body: bytes) -> None:
    res = await client.post("/sync", content=body, headers={"content-type": "application/json"})
    assert 400 <= res.status_code < 500, res.text
    assert res.json()["status_code"] == res.status_code
    assert "Traceback" not in res.text


@pytest.mark.parametrize(
    "since", ["9999-12-31T23:00:00-14:00", "0001-01-01T00:00:00+14:00", "99999-01-01T00:00:00Z"]
)
async def test_an_out_of_range_time_filter_is_a_4xx(client: httpx.AsyncClient, since: str) -> None:
    res = await client.get("/failures", params={"since": since})
    assert 400 <= res.status_code < 500, res.text
    assert "Traceback" not in res.text
