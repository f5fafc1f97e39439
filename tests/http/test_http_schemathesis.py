"""Property-based requests generated from the app's own OpenAPI document (schemathesis).

The app runs under uvicorn in a thread with its own event loop and opens its own connections
(no injected deps), the way it runs in production; schemathesis calls it over HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error

from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import work_groups
from finally_indexer.http.app import create_app
from finally_indexer.http.server import bound_port, build_server, start_in_background

KEY = "schemathesis-key"
pytestmark = pytest.mark.slow


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    # A worker has created its consumer groups (without them /health rightly answers 503)
    client = redis.Redis.from_url(settings.redis_dsn())
    for pair in work_groups(settings):
        client.xgroup_create(pair.stream, pair.group, id="0", mkstream=True)
    client.close()
    server = build_server(create_app(settings.model_copy(update={"api_key": SecretStr(KEY)})), "127.0.0.1", 0)
    stop = asyncio.Event()
    started = threading.Event()
    loop = asyncio.new_event_loop()

    async def run() -> None:
        task = await start_in_background(server, stop)
        started.set()
        await task

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(20)
    yield f"http://127.0.0.1:{bound_port(server)}"
    loop.call_soon_threadsafe(stop.set)
    thread.join(20)
    loop.close()


def _operations(base_url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]


def test_no_generated_request_causes_a_server_error(base_url: str) -> None:
    operations = _operations(base_url)
    assert {op.path for op in operations} >= {
        "/sync",
        "/reindex",
        "/retry",
        "/jobs/{job_id}",
        "/failures",
        "/status",
        "/health",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @hyp_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers={"X-API-Key": KEY}, timeout=10)
            case.validate_response(response, checks=[not_a_server_error])

        check()


def test_mutating_routes_refuse_generated_requests_without_the_key(base_url: str) -> None:
    for operation in _operations(base_url):
        if operation.method.upper() != "POST":
            continue

        @given(case=operation.as_strategy())
        @hyp_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
            case.headers = headers
            response = case.call(base_url=base_url, timeout=10)
            assert response.status_code == 401, (case.path, response.text)

        check()
