"""The embedded servers and the shared fixtures built on them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis as sync_redis

from finally_indexer.core.cli import build_parser, cmd_up
from finally_indexer.core.settings import Settings, load_settings
from finally_indexer.devenv._process import ServerError, find_binary
from finally_indexer.devenv.redis import RedisServer
from finally_indexer.devenv.servers import dev_servers


async def test_servers_keep_data_across_a_restart(server_dir: Path) -> None:
    async with dev_servers(server_dir) as urls:
        client = sync_redis.Redis.from_url(urls.redis_url)
        client.xadd("s", {"k": "v"})
        client.close()
        conn = await asyncpg.connect(urls.postgres_dsn)
        await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
        await conn.close()
    async with dev_servers(server_dir) as urls:
        client = sync_redis.Redis.from_url(urls.redis_url)
        assert client.xlen("s") == 1
        client.close()
        conn = await asyncpg.connect(urls.postgres_dsn)
        assert await conn.fetchval("SELECT x FROM kept") == 7
        await conn.close()


def test_a_missing_binary_says_how_to_install_it() -> None:
    with pytest.raises(ServerError, match=r"run scripts/bootstrap\.sh"):
        find_binary("no-such-server-binary")


def test_redis_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    script = (
        "import sys, time; from pathlib import Path;"
        "from finally_indexer.devenv.redis import RedisServer;"
        f"s = RedisServer(Path({str(tmp_path)!r})); s.start(); print(s._proc.pid, flush=True);"
        "time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        parent.kill()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
    # a restart on the same data dir works (no stale pid or lock in the way)
    server = RedisServer(tmp_path)
    server.start()
    server.stop()


async def test_fixtures_isolate_tests(settings: Settings, pool: asyncpg.Pool, redis, test_uid: str) -> None:
    assert settings.postgres_schema == f"t_{test_uid}"
    assert await pool.fetchval("SELECT current_schema()") == settings.postgres_schema
    assert await pool.fetchval("SELECT count(*) FROM products") == 0
    assert await pool.fetchval("SELECT to_regclass('failed_operations') IS NOT NULL")
    await redis.lpush(settings.legacy_list, b"{}")
    assert await redis.llen(settings.legacy_list) == 1
    assert test_uid in settings.jobs_stream
    assert settings.jobs_stream.startswith("{")
    assert settings.legacy_list in settings.jobs_stream


def test_test_servers_live_under_var(redis_url: str, postgres_dsn: str) -> None:
    folders = list((Path(__file__).parent.parent / "var" / "test-servers").glob(f"s{os.getpid()}"))
    assert len(folders) == 1
    assert redis_url.startswith("redis://127.0.0.1:")
    assert postgres_dsn.startswith("postgresql://postgres@127.0.0.1:")


def _pid_files(folder: Path) -> list[Path]:
    return [*folder.glob("postgres/data/postmaster.pid"), *folder.glob("redis/redis.pid")]


@pytest.mark.slow
async def test_up_prepares_the_database_runs_the_roles_and_stops_everything(server_dir: Path) -> None:
    args = build_parser().parse_args(["up", "--data-dir", str(server_dir), "--seed-count", "40"])
    settings = load_settings(vector_store="local", embedder="hashing", vector_size=64, http_port=0)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(3, stop.set)
    await asyncio.wait_for(cmd_up(settings, args, stop), 60)
    assert _pid_files(server_dir) == []
    async with dev_servers(server_dir) as urls:
        conn = await asyncpg.connect(urls.postgres_dsn)
        assert await conn.fetchval("SELECT count(*) FROM products") == 40
        assert await conn.fetchval("SELECT to_regclass('failed_operations') IS NOT NULL")
        await conn.close()
