"""The pipeline over TLS: Redis on a TLS-only port, PostgreSQL with ``sslmode=verify-full``.

A throwaway CA (trustme) signs the servers' certificates (for 127.0.0.1); the service trusts it
through ``REDIS_SSL_CA_CERTS`` and ``POSTGRES_SSLROOTCERT``. Redis also asks for a client
certificate (``REDIS_SSL_CERTFILE``/``REDIS_SSL_KEYFILE``). A client trusting another CA is
refused by both, so the certificates are really checked.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis.exceptions
import trustme
from pipeline.helpers import add_listings, assert_converged, push, run_until
from pydantic import SecretStr

from finally_indexer.core.cli import cmd_migrate
from finally_indexer.core.errors import DependencyUnavailable
from finally_indexer.core.redis_client import open_redis
from finally_indexer.core.settings import Settings
from finally_indexer.db.dev_schema import ensure_dev_products
from finally_indexer.db.pool import create_pool
from finally_indexer.devenv.postgres import PostgresServer
from finally_indexer.devenv.redis import RedisServer
from finally_indexer.devenv.tls import TlsFiles
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.stores.factory import build_vector_store


def _write(folder: Path, ca: trustme.CA) -> TlsFiles:
    """The CA and a certificate for 127.0.0.1 (and localhost) as PEM files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    issued = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(
        cert=folder / "cert.pem", key=folder / "key.pem", ca=folder / "ca.pem", auth_clients=True
    )
    issued.cert_chain_pems[0].write_to_path(str(files.cert))
    issued.private_key_pem.write_to_path(str(files.key))
    ca.cert_pem.write_to_path(str(files.ca))
    return files


@pytest.fixture
def tls(server_dir: Path) -> TlsFiles:
    return _write(server_dir / "pki", trustme.CA())


@pytest.fixture
def other_ca(server_dir: Path) -> Path:
    """A CA that signed nothing the servers present."""
    return _write(server_dir / "other-pki", trustme.CA()).ca


@pytest.fixture
def tls_servers(server_dir: Path, tls: TlsFiles) -> Iterator[tuple[str, str]]:
    """Redis (TLS only, client certificates required) and PostgreSQL (ssl=on), both on our CA."""
    redis_server = RedisServer(server_dir / "redis", tls=tls)
    postgres = PostgresServer(server_dir / "postgres", database="tls", durable=False, tls=tls)
    try:
        yield redis_server.start(), postgres.start()
    finally:
        redis_server.stop()
        postgres.stop()


@pytest.fixture
def tls_settings(redis_settings: Settings, tls_servers: tuple[str, str], tls: TlsFiles) -> Settings:
    redis_url, postgres_dsn = tls_servers
    # the client presents a certificate of the same CA (the server's own serves: Redis checks the CA)
    return redis_settings.model_copy(
        update={
            "redis_url": SecretStr(redis_url),
            "redis_ssl_ca_certs": tls.ca,
            "redis_ssl_certfile": tls.cert,
            "redis_ssl_keyfile": tls.key,
            "database_url": SecretStr(postgres_dsn),
            "postgres_sslmode": "verify-full",
            "postgres_sslrootcert": tls.ca,
            "postgres_schema": "indexer",
        }
    )


@pytest.mark.slow
async def test_the_pipeline_runs_over_verified_tls(tls_settings: Settings) -> None:
    assert tls_settings.redis_dsn().startswith("rediss://")
    await cmd_migrate(tls_settings, argparse.Namespace(), asyncio.Event())  # psycopg over TLS
    pool = await create_pool(tls_settings)  # asyncpg over TLS
    store = build_vector_store(tls_settings)
    try:
        assert await pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        await ensure_dev_products(pool)
        await add_listings(pool, 1, 20)
        pipeline = await Pipeline.open(tls_settings, pool=pool, store=store)
        try:
            await push(pipeline.redis, tls_settings, {"operation": "sync", "product_ids": "all"})

            async def done() -> bool:
                return bool(await pool.fetchval("SELECT bool_and(is_conversion) FROM products"))

            await run_until(pipeline, done, timeout_s=60)  # the worker: FastStream's own connections
        finally:
            await pipeline.aclose()
        await assert_converged(pool, store, tls_settings)
        every_session_on_tls = await pool.fetchval(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
            "WHERE a.datname = current_database()"
        )
        assert every_session_on_tls
    finally:
        await pool.close()
        await store.aclose()


@pytest.mark.slow
async def test_a_server_certificate_from_another_ca_is_refused(
    tls_settings: Settings, other_ca: Path
) -> None:
    wrong = tls_settings.model_copy(update={"redis_ssl_ca_certs": other_ca, "postgres_sslrootcert": other_ca})
    client = open_redis(wrong)
    try:
        with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.ping()
    finally:
        await client.aclose()
    with pytest.raises(DependencyUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await create_pool(wrong)
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        await psycopg.AsyncConnection.connect(wrong.migrate_dsn())
    # and a plain connection to the TLS-only Redis port gets nowhere
    plain_url = SecretStr(tls_settings.redis_dsn().replace("rediss://", "redis://"))
    plain = open_redis(tls_settings.model_copy(update={"redis_url": plain_url}))
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await plain.ping()
    finally:
        await plain.aclose()


async def test_redis_asks_for_a_client_certificate(tls_settings: Settings) -> None:
    anonymous = tls_settings.model_copy(update={"redis_ssl_certfile": None, "redis_ssl_keyfile": None})
    client = open_redis(anonymous)
    try:
        with pytest.raises((redis.exceptions.ConnectionError, ssl.SSLError)):
            await client.ping()
    finally:
        await client.aclose()
