"""A real Prometheus scrapes the running app until the lag series appears."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from finally_indexer.devenv._process import free_port

PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.prometheus,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed"),
]


@pytest.fixture
async def prometheus(live_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """Prometheus scraping the test's app every second; its API base URL."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "finally-indexer-api",
                "static_configs": [{"targets": [live_url.removeprefix("http://")]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        PROMETHEUS or "prometheus",
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    await proc.wait()
    log.close()


async def test_prometheus_scrapes_the_lag_series(prometheus: str) -> None:
    async with httpx.AsyncClient(base_url=prometheus, timeout=5) as client, asyncio.timeout(60):
        while True:  # the first scrape comes ~7 s after start
            try:
                res = await client.get(
                    "/api/v1/query", params={"query": "finally_indexer_consumer_group_lag"}
                )
                result = res.json()["data"]["result"] if res.status_code == 200 else []
            except httpx.TransportError:
                result = []
            if result:
                break
            await asyncio.sleep(0.5)
    assert {r["metric"]["job"] for r in result} == {"finally-indexer-api"}
    assert {r["metric"]["group"] for r in result} == {"planner", "indexer"}
