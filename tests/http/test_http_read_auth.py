"""The read credential, the limit on failed authentications and the dashboard's security headers."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
from app_client import serve_in_loop
from litestar import Litestar
from pydantic import SecretStr

from finally_indexer.core.settings import Settings
from finally_indexer.http import ratelimit
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.http.ratelimit import WINDOW_S, FailureLimiter

API_KEY = "test-key-0123456789"
READ_KEY = "read-key-0123456789abcdef"
HTTP = Path(__file__).resolve().parents[2] / "http"
READ_ROUTES = ("/status", "/failures", "/jobs/none", "/listings/1", "/audit", "/dashboard")
OPEN_ROUTES = ("/health/live", "/health", "/metrics", "/static/dashboard.js")


@pytest.fixture
def read_keyed_app(settings: Settings, deps: AppDeps) -> Litestar:
    keyed = settings.model_copy(
        update={
            "api_key": SecretStr(API_KEY),
            "read_api_key": SecretStr(READ_KEY),
            "auth_failures_per_minute": 3,
        }
    )
    return create_app(keyed, deps=deps)


def _client(app: Litestar, host: str = "10.0.0.1") -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return serve_in_loop(app, client=(host, 40000))


@pytest.fixture
async def client(read_keyed_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(read_keyed_app) as c:
        yield c


def _basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()}


async def test_read_routes_need_the_read_key_when_one_is_set(client: httpx.AsyncClient) -> None:
    for path in READ_ROUTES:
        refused = await client.get(path)
        assert refused.status_code == 401, path
        assert refused.headers["WWW-Authenticate"].startswith("Basic"), path
        for headers in (
            {"X-API-Key": READ_KEY},
            {"X-API-Key": API_KEY},  # the mutating key reads as well
            {"Authorization": f"Bearer {READ_KEY}"},
            _basic(READ_KEY),  # what a browser sends after its prompt
        ):
            answer = await client.get(path, headers=headers)
            assert answer.status_code in (200, 404), (path, headers, answer.text)  # /jobs/none: 404
    for path in OPEN_ROUTES:
        assert (await client.get(path)).status_code in (200, 503), path  # /health may find a store down


async def test_the_read_key_does_not_open_the_mutating_routes(client: httpx.AsyncClient) -> None:
    answer = await client.post("/sync", json={"product_ids": [1]}, headers={"X-API-Key": READ_KEY})
    assert answer.status_code == 401


async def test_without_a_read_key_the_read_routes_stay_open(client_open: httpx.AsyncClient) -> None:
    for path in READ_ROUTES:
        assert (await client_open.get(path)).status_code in (200, 404), path  # no audit, no job "none"


@pytest.fixture
async def client_open(settings: Settings, deps: AppDeps) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(create_app(settings, deps=deps)) as c:
        yield c


async def test_too_many_wrong_keys_get_429_and_other_clients_do_not(read_keyed_app: Litestar) -> None:
    async with _client(read_keyed_app, "10.0.0.7") as guesser, _client(read_keyed_app, "10.0.0.8") as other:
        wrong = {"X-API-Key": "wrong-key-0123456789"}
        assert [(await guesser.get("/status", headers=wrong)).status_code for _ in range(3)] == [401] * 3
        # a fourth attempt is refused before the key is even looked at, the right key included
        blocked = await guesser.get("/status", headers={"X-API-Key": READ_KEY})
        assert blocked.status_code == 429
        assert blocked.json()["error"] == "too_many_requests"
        assert 0 < int(blocked.headers["Retry-After"]) <= WINDOW_S
        mutating = await guesser.post("/sync", json={"product_ids": [1]}, headers={"X-API-Key": API_KEY})
        assert mutating.status_code == 429
        assert (await other.get("/status", headers={"X-API-Key": READ_KEY})).status_code == 200
        # no key at all is not a guess (a browser before its login prompt): never counted
        for _ in range(5):
            assert (await other.get("/status")).status_code == 401
        assert (await other.get("/status", headers={"X-API-Key": READ_KEY})).status_code == 200


def test_the_block_ends_a_minute_after_the_failures() -> None:
    now = [1000.0]
    limiter = FailureLimiter(2, clock=lambda: now[0])
    limiter.failed("a")
    now[0] += 30
    limiter.failed("a")
    assert limiter.retry_after("a") == pytest.approx(30.0)
    now[0] += 30.5  # the first failure left the window
    assert limiter.retry_after("a") is None
    now[0] += 60
    assert limiter.retry_after("a") is None


async def test_the_dashboard_sends_strict_security_headers(client_open: httpx.AsyncClient) -> None:
    for path in ("/dashboard", "/static/dashboard.js", "/static/dashboard.css"):
        answer = await client_open.get(path)
        assert answer.status_code == 200, path
        csp = answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["X-Frame-Options"] == "DENY"
    api = await client_open.get("/status")
    assert api.headers["Referrer-Policy"] == "no-referrer"
    assert api.headers["X-Content-Type-Options"] == "nosniff"


def test_the_dashboard_page_has_no_inline_script_or_style() -> None:
    """What the CSP forbids must not be in the page: every script is a file, no handler attributes."""
    html = (HTTP / "templates" / "dashboard.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S | re.I)
    assert scripts
    assert all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I)
    assert not re.search(r"<style\b|\sstyle\s*=", html, flags=re.I)
    assert "javascript:" not in html


def test_the_limiter_forgets_the_client_idle_longest_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blocked client that keeps failing is not evicted before clients that went quiet."""
    monkeypatch.setattr(ratelimit, "MAX_CLIENTS", 2)
    limiter = FailureLimiter(2, clock=lambda: 0.0)
    limiter.failed("guesser")
    limiter.failed("quiet")
    limiter.failed("guesser")  # blocked now, and its last failure is the newest
    limiter.failed("newcomer")  # full: one of the two others is forgotten
    assert limiter.retry_after("guesser") is not None
    assert limiter.retry_after("quiet") is None
