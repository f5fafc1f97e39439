"""API key guard, structured errors, OpenAPI, and the lifespan that opens its own connections."""

from __future__ import annotations

import hmac
from typing import Any

import httpx
import pytest
from app_client import serve_in_loop
from litestar import Litestar
from litestar.testing import AsyncTestClient
from pydantic import SecretStr
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.http.app import create_app
from finally_indexer.processor.broker import ensure_groups

API_KEY = "test-key-0123456789"  # the same as conftest.keyed_settings


@pytest.mark.parametrize("path", ["/sync", "/retry", "/reindex"])
async def test_mutating_routes_refuse_without_the_key(keyed_client: httpx.AsyncClient, path: str) -> None:
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": API_KEY + "x"}, {"X-API-Key": ""}):
        res = await keyed_client.post(path, json={"all": True} if path == "/retry" else {}, headers=headers)
        assert res.status_code == 401, headers
        assert res.json()["error"] == "unauthorized"


async def test_reindex_before_any_worker_recorded_a_generation_is_a_conflict(
    keyed_client: httpx.AsyncClient,
) -> None:
    res = await keyed_client.post("/reindex", json={}, headers={"X-API-Key": API_KEY})
    assert res.status_code == 409
    assert "start a worker first" in res.json()["detail"]
    estimate = await keyed_client.post("/reindex", json={"dry_run": True}, headers={"X-API-Key": API_KEY})
    assert estimate.status_code == 200  # a dry run needs no generation: it only reads PostgreSQL
    assert estimate.json()["listings"] == 0


async def test_the_key_admits_and_reads_stay_open(keyed_client: httpx.AsyncClient) -> None:
    assert (await keyed_client.post("/sync", json={}, headers={"X-API-Key": API_KEY})).status_code == 202
    assert (
        await keyed_client.post("/retry", json={"all": True}, headers={"X-API-Key": API_KEY})
    ).status_code == 200
    for path in ("/status", "/failures", "/health/live", "/dashboard", "/schema/openapi.json"):
        assert (await keyed_client.get(path)).status_code == 200, path


async def test_the_key_is_compared_in_constant_time(
    keyed_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr("finally_indexer.http.auth.hmac.compare_digest", spy)
    await keyed_client.post("/sync", json={}, headers={"X-API-Key": "nope"})
    assert calls == [(b"nope", API_KEY.encode())]


async def test_without_a_configured_key_no_header_is_needed(client: httpx.AsyncClient) -> None:
    assert (await client.post("/sync", json={})).status_code == 202


@pytest.mark.parametrize(
    ("host", "status"), [("::1", 202), ("127.0.0.5", 202), ("192.0.2.7", 401), ("testclient", 401)]
)
async def test_without_a_configured_key_only_loopback_clients_may_mutate(
    app: Litestar, host: str, status: int
) -> None:
    """A deployment that forgot API_KEY is not left open: remote clients are refused (ASGI scope only)."""
    async with serve_in_loop(app, client=(host, 40000)) as remote:
        res = await remote.post("/sync", json={})
        assert res.status_code == status, res.text
        assert (await remote.get("/status")).status_code == 200  # reads stay open


async def test_errors_are_structured_without_stack_traces(client: httpx.AsyncClient) -> None:
    res = await client.get("/no/such/route")
    assert res.status_code == 404
    assert res.json() == {"status_code": 404, "error": "not_found", "detail": "Not Found"}
    res = await client.put("/sync", json={})
    assert res.status_code == 405
    assert res.json()["error"] == "method_not_allowed"


async def test_internal_errors_hide_details(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finally_indexer.db import reports  # noqa: PLC0415

    async def boom(*_: Any, **__: Any) -> None:
        raise ZeroDivisionError("secret internals")

    monkeypatch.setattr(reports, "job", boom)
    res = await client.get("/jobs/x")
    assert res.status_code == 500
    assert res.json()["error"] == "internal_error"
    assert "secret" not in res.text
    assert "Traceback" not in res.text


async def test_openapi_documents_examples_security_and_swagger(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/schema/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "name": "X-API-Key",
        "in": "header",
    }
    assert spec["paths"]["/sync"]["post"]["security"] == [{"ApiKey": []}]
    assert spec["paths"]["/retry"]["post"]["security"] == [{"ApiKey": []}]
    for path in ("/sync", "/retry"):
        body_schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert len(body_schema["examples"]) >= 2, path
    swagger = await client.get("/schema/swagger")
    assert swagger.status_code == 200
    assert "swagger" in swagger.text.lower()


async def test_lifespan_opens_and_closes_its_own_connections(settings: Settings, redis: Redis) -> None:
    await ensure_groups(redis, settings)  # a worker's groups: /health is 200 only while work is consumed
    app: Litestar = create_app(settings.model_copy(update={"api_key": SecretStr(API_KEY)}))
    async with AsyncTestClient(app=app) as client:
        res = await client.get("/health")
        assert res.status_code == 200, res.text
        res = await client.post("/sync", json={"product_ids": [1]}, headers={"X-API-Key": API_KEY})
        assert res.status_code == 202
    assert app.state.deps.pool.is_closing()
