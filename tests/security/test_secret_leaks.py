"""No secret value leaves the process: not in logs, exception text, /status, /failures or streams.

Two halves. Real ``finally-indexer worker`` processes, given every secret through a ``*_FILE``
(Docker secrets), are pointed at a PostgreSQL, a Redis and a Qdrant that refuse them: each exits,
and its whole output (logs and the exception text) is searched for the secrets. Then a pipeline
whose embedding calls fail with an upstream message quoting the API key (as some providers do)
runs until the batch is dead-lettered: the failure rows, the events and dead-letter streams,
``/status``, ``/failures`` and the captured logs are searched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from app_client import serve_in_loop
from pipeline.helpers import HookedEmbedder, add_listings, entries, push, run_until
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.devenv._process import free_port
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.processor.embedders.factory import build_embedder
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.stores.factory import build_vector_store

SECRETS = {
    "postgres_password": "pg-Secret-7f3a91c2e5",
    "redis_password": "redis-Secret-2b8d44e0aa",
    "qdrant_api_key": "qdrant-Secret-91c0ff3e77",
    "openai_api_key": "sk-Secret-5d2e8a7c4b1f",
    "api_key": "api-Secret-0a9e6b3c2d1f",
}


def _leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def _secret_files(folder: Path) -> dict[str, str]:
    """Every secret as a file, and the ``*_FILE`` variables naming them."""
    env = {}
    for name, value in SECRETS.items():
        path = folder / name
        path.write_text(value + "\n")
        env[f"{name.upper()}_FILE"] = str(path)
    return env


def _run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}
    }
    return subprocess.run(
        [sys.executable, "-m", "finally_indexer.core.cli", "worker"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _worker_env(settings: Settings, **overrides: str) -> dict[str, str]:
    env = settings.as_environment()
    # the clear values come from the files only
    for name in (*SECRETS, "database_url", "redis_url"):
        env.pop(name.upper(), None)
    return {**env, "LOG_LEVEL": "DEBUG", **overrides}


@pytest.mark.slow
@pytest.mark.parametrize("dependency", ["postgres", "redis", "qdrant"])
def test_a_worker_failing_on_a_dependency_shows_no_secret(
    dependency: str, settings: Settings, server_dir: Path
) -> None:
    closed = free_port()  # nothing listens: the dependency refuses the connection
    files = _secret_files(server_dir)
    # the URL forms carry the password too: each is itself a secret file here
    redis_url = settings.redis_dsn().replace("redis://", f"redis://indexer:{SECRETS['redis_password']}@")
    pg_dsn = settings.postgres_dsn().replace(
        "postgresql://postgres@", f"postgresql://postgres:{SECRETS['postgres_password']}@"
    )
    if dependency == "postgres":
        pg_dsn = f"postgresql://postgres:{SECRETS['postgres_password']}@127.0.0.1:{closed}/finally"
    if dependency == "redis":
        redis_url = f"redis://indexer:{SECRETS['redis_password']}@127.0.0.1:{closed}/0"
    (server_dir / "database_url").write_text(pg_dsn)
    (server_dir / "redis_url").write_text(redis_url)
    env = _worker_env(
        settings,
        **{k: v for k, v in files.items() if k not in ("POSTGRES_PASSWORD_FILE", "REDIS_PASSWORD_FILE")},
        DATABASE_URL_FILE=str(server_dir / "database_url"),
        REDIS_URL_FILE=str(server_dir / "redis_url"),
        EMBEDDER="hashing",
    )
    if dependency == "qdrant":
        env |= {"VECTOR_STORE": "server", "QDRANT_URL": f"http://127.0.0.1:{closed}"}
    done = _run_worker(env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-2000:]
    # the failure is reported, and it is the refused dependency's (not an early crash) ...
    named = {"postgres": str(closed), "redis": str(closed), "qdrant": "DependencyUnavailable: qdrant"}
    assert named[dependency] in output, output[-2000:]
    assert _leaks(output) == []  # ... without a secret in it


@pytest.mark.slow
async def test_failures_events_status_and_logs_show_no_secret(
    settings: Settings, redis: Redis, pool: asyncpg.Pool[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings.model_copy(update={"max_deliveries": 1, "reclaim_idle_ms": 200})
    inner = build_embedder(settings)

    async def upstream_quotes_the_key(_: Sequence[str]) -> None:
        raise RuntimeError(  # not an outage: counted, so the batch is dead-lettered
            f"401 from upstream: Incorrect API key provided: {SECRETS['openai_api_key']} "
            f"(api_key={SECRETS['openai_api_key']}, Authorization: Bearer {SECRETS['openai_api_key']}, "
            f"retry via https://user:{SECRETS['api_key']}@gateway.example/v1)"
        )

    store = build_vector_store(settings)
    await add_listings(pool, 1, 4)
    pipeline = await Pipeline.open(
        settings, redis=redis, pool=pool, store=store, embedder=HookedEmbedder(inner, upstream_quotes_the_key)
    )
    try:
        await push(redis, settings, {"operation": "sync", "product_ids": "all"})

        async def dead_lettered() -> bool:
            return bool(
                await pool.fetchval("SELECT count(*) FROM failed_operations WHERE product_id IS NOT NULL")
            )

        await run_until(pipeline, dead_lettered, timeout_s=60)
        texts = [
            str([dict(r) for r in await pool.fetch("SELECT * FROM failed_operations")]),
            str([dict(r) for r in await pool.fetch("SELECT * FROM index_jobs")]),
            str(await entries(redis, settings.events_stream)),
            str(await entries(redis, settings.dead_letter_stream)),
            str(await redis.hgetall(f"{settings.batch_stream}:failures")),
        ]
        assert "401 from upstream" in texts[0]  # the message is kept, the key is not
        deps = AppDeps(pool=pool, redis=redis, store=store)
        async with serve_in_loop(create_app(settings, deps=deps)) as client:
            texts.extend(
                [(await client.get(path)).text for path in ("/status", "/failures", "/metrics", "/health")]
            )
    finally:
        await pipeline.aclose()
        await store.aclose()
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    assert [(i, _leaks(text)) for i, text in enumerate(texts) if _leaks(text)] == []
