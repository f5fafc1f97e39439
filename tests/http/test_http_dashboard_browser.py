"""The dashboard in headless Chromium: it renders the same figures as /status, and a screenshot."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from finally_indexer.core.settings import Settings
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.http.server import serving

READ_KEY = "read-key-0123456789abcdef"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
#: The screenshot goes to var/ on every run; UPDATE_SCREENSHOT=1 refreshes the one in docs/.
SCREENSHOT = ROOT / ("docs/img" if os.environ.get("UPDATE_SCREENSHOT") == "1" else "var") / "dashboard.png"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed"),
]


@pytest.fixture
async def served(deps: AppDeps, settings: Settings) -> AsyncIterator[str]:
    async with serving(create_app(settings, deps=deps)) as url:
        yield url


async def test_dashboard_shows_the_status_figures(served: str, scenario: Any) -> None:
    from playwright.async_api import async_playwright  # noqa: PLC0415

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # the page runs under its Content-Security-Policy: a violation is logged to the console
            page.on("console", lambda msg: errors.append(msg.text) if "Security Policy" in msg.text else None)
            await page.goto(f"{served}/dashboard")
            await page.wait_for_selector("body[data-rendered]", state="attached", timeout=15_000)
            shown = await page.eval_on_selector_all(
                "[data-figure]",
                "nodes => Object.fromEntries(nodes.map(n => [n.dataset.figure, n.dataset.value]))",
            )
            await page.wait_for_timeout(2_500)  # a second poll draws the lag chart's first line
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            jobs_text = await page.inner_text("#jobs")
            errors_text = await page.inner_text("#errors")
        finally:
            await browser.close()
    async with httpx.AsyncClient() as client:
        status = (await client.get(f"{served}/status")).json()

    assert errors == []
    batches = status["queues"]["streams"][1]["group"]
    jobs = status["queues"]["streams"][0]["group"]
    expected = {
        "listings.indexed": status["listings"]["indexed"],
        "listings.total": status["listings"]["total"],
        "listings.pending": status["listings"]["pending"],
        "queues.legacy_list_length": status["queues"]["legacy_list_length"],
        "queues.dead_letter_length": status["queues"]["dead_letter_length"],
        "jobs.lag": jobs["lag"],
        "jobs.pending": jobs["pending"],
        "batches.lag": batches["lag"],
        "batches.pending": batches["pending"],
        "batches.consumers_alive": batches["consumers_alive"],
        "failures_open": status["failures_open"],
        "failures_last_hour": status["failures_last_hour"],
    }
    assert {k: int(shown[k]) for k in expected} == expected
    assert shown["listings.coverage_pct"] == "60"
    assert "api-scenario" in jobs_text
    assert "1,850 tokens · $0.0002" in jobs_text  # the job's cost so far
    assert "입력 거부됨" in errors_text  # Korean renders from the page's own text


@pytest.fixture
async def served_with_read_key(deps: AppDeps, settings: Settings) -> AsyncIterator[str]:
    keyed = settings.model_copy(update={"read_api_key": SecretStr(READ_KEY)})
    async with serving(create_app(keyed, deps=deps)) as url:
        yield url


async def test_dashboard_behind_a_read_key_works_after_the_browser_login(
    served_with_read_key: str, scenario: Any
) -> None:
    """The 401 asks for Basic credentials; once given, the page and its /status polls get through."""
    async with httpx.AsyncClient() as client:
        refused = await client.get(f"{served_with_read_key}/dashboard")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    from playwright.async_api import async_playwright  # noqa: PLC0415

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(http_credentials={"username": "ops", "password": READ_KEY})
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if "Security Policy" in msg.text else None)
            await page.goto(f"{served_with_read_key}/dashboard")
            await page.wait_for_selector("body[data-rendered]", state="attached", timeout=15_000)
            indexed = await page.get_attribute('[data-figure="listings.indexed"]', "data-value")
        finally:
            await browser.close()
    assert errors == []
    assert indexed == "6"
