"""start_metrics_server: the /metrics endpoint of the worker and bridge processes."""

from __future__ import annotations

import httpx
import pytest

from finally_indexer.core.settings import Settings
from finally_indexer.devenv._process import free_port
from finally_indexer.http.server import start_metrics_server


async def test_port_zero_disables_it(settings: Settings) -> None:
    assert await start_metrics_server(settings.model_copy(update={"metrics_port": 0})) is None


@pytest.mark.parametrize("with_db", [True, False])
async def test_serves_metrics_and_liveness_until_closed(settings: Settings, with_db: bool) -> None:
    port = free_port()
    server = await start_metrics_server(settings.model_copy(update={"metrics_port": port}), with_db=with_db)
    assert server is not None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert "finally_indexer_consumer_group_lag" in metrics.text
            assert (await client.get("/health/live")).json() == {"status": "alive"}
    finally:
        await server.aclose()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/metrics")
