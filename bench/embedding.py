"""Embedding budget benchmark: how much of the API's rate limit a sync uses, with 1 and 3 workers.

Starts throwaway Redis and PostgreSQL (devenv), seeds the demo listings (``--listings``, 30,000 by
default), and for each regime starts the project's fake OpenAI server (``tests/fakes``) in its own
process with a tokens-per-minute and requests-per-minute limit and a latency per request. The
server answers like the API: ``x-ratelimit-*`` headers, 429 with ``retry-after`` over the limit.
Then, per regime and per worker count (1, then 3 ``finally-indexer worker`` processes, each with
its own throwaway edge store; the budget is what is measured), it LPUSHes a sync of every listing
and waits for the job to complete, and prints:

- listings/s;
- tokens/min achieved ÷ the binding limit (the server's count of the tokens it admitted, over the
  time from the LPUSH to the job completed);
- the share of requests answered 429;
- a per-item loop baseline in the same run, on a fresh server with the same limits: read one
  listing, embed it, upsert it (what a team writes first), for ``--baseline-s`` seconds.

Regimes (``--regimes``): ``1M/300ms``, ``5M/300ms``, ``5M/2s`` (tokens per minute / latency).
Run: ``python bench/embedding.py`` (about 25 minutes: the 1M regime alone is 8 minutes a run), or
``python bench/embedding.py --regimes 5M/300ms --listings 5000 --workers 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import openai
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the fake server lives with the tests

from fakes.openai_server import FakeOpenAI  # noqa: E402

from finally_indexer.core.logging import configure_logging  # noqa: E402
from finally_indexer.core.settings import Settings, load_settings  # noqa: E402
from finally_indexer.db.dev_schema import ensure_dev_products  # noqa: E402
from finally_indexer.db.migrate import upgrade  # noqa: E402
from finally_indexer.db.pool import create_pool  # noqa: E402
from finally_indexer.db.seed_demo import seed_demo  # noqa: E402
from finally_indexer.devenv.servers import dev_servers  # noqa: E402
from finally_indexer.processor.bridge import Bridge  # noqa: E402
from finally_indexer.processor.embedders.tokens import count_tokens  # noqa: E402
from finally_indexer.processor.stores.factory import build_vector_store  # noqa: E402
from finally_indexer.processor.texts import build_text, payload_for, text_hash, version_of  # noqa: E402
from finally_indexer.processor.vectorstore import ListingPoint  # noqa: E402

SCHEMA = "bench_embedding"
MODEL = "text-embedding-3-large"
DIMENSIONS = 256  # the budget does not depend on it; a small size keeps the fake server cheap
#: OpenAI-like requests-per-minute limits that go with each tokens-per-minute limit (tiers 1 and 3).
RPM = {1_000_000: 3_000, 5_000_000: 5_000}
#: The fake server's tolerance (s of each limit it lets a client spend ahead): the API's per-minute
#: limits are lenient over seconds; the service's own ``EMBEDDING_BURST_S`` (5 s) stays below it.
SERVER_BURST_S = 10.0
SYNC_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Regime:
    name: str
    tokens_per_minute: int
    latency_s: float

    @property
    def requests_per_minute(self) -> int:
        return RPM.get(self.tokens_per_minute, max(1, self.tokens_per_minute // 1000))


def parse_regime(text: str) -> Regime:
    """``"5M/2s"`` → 5,000,000 tokens/min at 2 s per request; ``"1M/300ms"``."""
    tokens, latency = text.split("/")
    tpm = int(float(tokens.rstrip("Mk")) * (1_000_000 if tokens.endswith("M") else 1_000))
    seconds = float(latency[:-2]) / 1000 if latency.endswith("ms") else float(latency.rstrip("s"))
    return Regime(text, tpm, seconds)


# --- the fake server, in a process of its own ------------------------------------------------------
async def serve_fake(tpm: int, rpm: int, latency: float) -> None:
    """Child mode: print the base URL, serve until stdin closes, then print the server's figures."""
    async with FakeOpenAI() as fake:
        fake.latency = latency
        limits = fake.limit_rate(tpm, rpm, burst_s=SERVER_BURST_S)
        print(fake.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        statuses = [r.status for r in fake.requests]
        print(
            json.dumps({"requests": len(statuses), "rejected": statuses.count(429), "tokens": limits.tokens}),
            flush=True,
        )


class FakeProcess:
    """``bench/embedding.py --serve-fake``: a fake server with the regime's limits, in a child process."""

    def __init__(self, regime: Regime) -> None:
        self.regime = regime
        self.proc: asyncio.subprocess.Process | None = None
        self.base_url = ""

    async def __aenter__(self) -> FakeProcess:
        r = self.regime
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve-fake", str(r.tokens_per_minute), str(r.requests_per_minute),
            str(r.latency_s), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.base_url = (await self.proc.stdout.readline()).decode().strip()
        return self

    async def figures(self) -> dict[str, int]:
        """Stop the server; what it saw: requests, 429s, tokens admitted."""
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        line = await self.proc.stdout.readline()
        await self.proc.wait()
        figures: dict[str, int] = json.loads(line)
        return figures

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


# --- the service: N worker processes ---------------------------------------------------------------
def worker_settings(settings: Settings, base_url: str, regime: Regime, *, learn: bool) -> Settings:
    return settings.model_copy(
        update={
            "openai_base_url": base_url,
            "embedding_tpm": 0 if learn else regime.tokens_per_minute,
            "embedding_rpm": 0 if learn else regime.requests_per_minute,
        }
    )


async def start_workers(settings: Settings, root: Path, n: int) -> list[asyncio.subprocess.Process]:
    """``n`` worker processes, each with its own edge store; returns when every one has started."""
    procs, logs = [], []
    for i in range(n):
        folder = root / f"worker-{i}"
        folder.mkdir(parents=True)
        # INFO: the log's "worker_started" line is how we know the worker is consuming
        env = {"PATH": os.environ.get("PATH", "")} | settings.model_copy(
            update={"qdrant_path": folder / "qdrant", "consumer_name": f"bench-{i}", "log_level": "INFO"}
        ).as_environment()
        log = folder / "worker.log"
        with log.open("ab") as out:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "finally_indexer.core.cli",
                    "worker",
                    env=env,
                    stdout=out,
                    stderr=out,
                )
            )
        logs.append(log)
    while not all("worker_started" in log.read_text(errors="replace") for log in logs):
        if any(p.returncode is not None for p in procs):
            raise RuntimeError(f"a worker exited at start: see {logs}")
        await asyncio.sleep(0.2)
    return procs


async def stop_workers(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def reset(pool: asyncpg.Pool[Any], redis: Redis) -> None:
    """Every listing to be indexed again, nothing in Redis (streams, groups, the budget)."""
    await redis.flushall()
    await pool.execute("UPDATE products SET is_conversion = false")
    await pool.execute("TRUNCATE index_state")


async def sync_with_workers(
    settings: Settings,
    pool: asyncpg.Pool[Any],
    redis: Redis,
    *,
    root: Path,
    regime: Regime,
    n: int,
    learn: bool,
) -> dict[str, float]:
    """One sync of every listing by ``n`` workers against a fresh fake server; the figures."""
    await reset(pool, redis)
    async with FakeProcess(regime) as fake:
        run = worker_settings(settings, fake.base_url, regime, learn=learn)
        procs = await start_workers(run, root / f"{regime.name.replace('/', '-')}-{n}w", n)
        stop = asyncio.Event()
        bridge = asyncio.create_task(
            Bridge(redis, list_key=run.legacy_list, stream_key=run.jobs_stream).run(stop)
        )
        job = f"bench-{regime.name}-{n}"
        try:
            started = time.perf_counter()
            await redis.lpush(
                run.legacy_list, json.dumps({"operation": "sync", "product_ids": "all", "job_id": job})
            )
            status = None
            while status not in ("completed", "failed"):  # the job row is the clock
                if time.perf_counter() - started > SYNC_TIMEOUT_S:
                    raise TimeoutError(f"{job} did not finish")
                await asyncio.sleep(0.1)
                status = await pool.fetchval("SELECT status FROM index_jobs WHERE external_id = $1", job)
            elapsed = time.perf_counter() - started
        finally:
            stop.set()
            await bridge
            await stop_workers(procs)
        figures = await fake.figures()
    indexed = await pool.fetchval("SELECT count(*) FROM products WHERE is_conversion")
    return {"elapsed": elapsed, "indexed": float(indexed), **{k: float(v) for k, v in figures.items()}}


# --- the baseline: a per-item loop -----------------------------------------------------------------
async def per_item_loop(settings: Settings, pool: asyncpg.Pool[Any], regime: Regime, seconds: float) -> float:
    """Listings/s of read one → embed one → upsert one, for ``seconds``, on a fresh fake server."""
    async with FakeProcess(regime) as fake:
        client = openai.AsyncOpenAI(api_key="sk-bench-baseline", base_url=fake.base_url)
        store = build_vector_store(
            settings.model_copy(
                update={"vector_store": "local", "qdrant_path": Path(":memory:"), "collection": "loop"}
            )
        )
        await store.ensure_collection()
        done, product_id = 0, 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            row = await pool.fetchrow("SELECT * FROM products WHERE id > $1 ORDER BY id LIMIT 1", product_id)
            if row is None:
                break
            product_id = int(row["id"])
            record = dict(row)
            text = build_text(record, settings.text_template)
            response = await client.embeddings.create(model=MODEL, input=[text], dimensions=DIMENSIONS)
            point = ListingPoint(
                product_id, list(response.data[0].embedding), version_of(record["updated_at"]), text_hash(text),
                payload_for(record),
            )  # fmt: skip
            await store.upsert([point])
            done += 1
        elapsed = time.perf_counter() - started
        await store.aclose()
        await client.close()
        await fake.figures()
    return done / elapsed


# --- the run ---------------------------------------------------------------------------------------
def report(
    regime: Regime, n: int, corpus: tuple[int, int], figures: dict[str, float], baseline: float
) -> str:
    """One line; ``corpus`` is (listings, their tokens): tokens the sync needed, not what it spent."""
    listings, needed = corpus
    minutes = figures["elapsed"] / 60
    token_share = figures["tokens"] / minutes / regime.tokens_per_minute
    request_share = figures["requests"] / minutes / regime.requests_per_minute
    binding, share = ("tokens", token_share) if token_share >= request_share else ("requests", request_share)
    rate = listings / figures["elapsed"]
    rejected = figures["rejected"] / max(1.0, figures["requests"])
    return (
        f"{regime.name:<9} {n} worker{'s' if n > 1 else ' '}  {listings:,} listings in {figures['elapsed']:6.1f} s"
        f" = {rate:6.1f}/s | {binding}/min ÷ limit {share:6.1%} (listings' own tokens/min ÷ limit"
        f" {needed / minutes / regime.tokens_per_minute:6.1%}) | 429: {int(figures['rejected'])}"
        f"/{int(figures['requests'])} requests = {rejected:.2%} | per-item loop {baseline:.2f}/s"
        f" ({rate / baseline:,.0f} times)"
    )


async def main(
    regimes: list[Regime], workers: list[int], listings: int, baseline_s: float, learn: bool
) -> None:
    configure_logging("WARNING", "console")
    # BENCH_KEEP=1 keeps the folder (the workers' logs) for a look afterwards
    keep = bool(os.environ.get("BENCH_KEEP"))
    folder = tempfile.mkdtemp(prefix="bench-embedding-", dir=".") if keep else None
    with (
        contextlib.nullcontext(folder)
        if keep
        else tempfile.TemporaryDirectory(prefix="bench-embedding-", dir=".") as tmp
    ):
        root = Path(str(tmp))
        async with dev_servers(root / "servers", durable=False) as urls:
            settings = load_settings(
                database_url=urls.postgres_dsn, redis_url=urls.redis_url, postgres_schema=SCHEMA,
                embedder="openai", openai_api_key="sk-bench-embedding-budget", embedding_model=MODEL,
                vector_size=DIMENSIONS, vector_store="edge", audit_interval_s=0, metrics_port=0,
                log_level="WARNING",
            )  # fmt: skip
            await asyncio.to_thread(upgrade, urls.postgres_dsn, schema=SCHEMA)
            pool = await create_pool(settings)
            redis = Redis.from_url(urls.redis_url)
            await ensure_dev_products(pool)
            await seed_demo(pool, count=listings, progress=False)
            rows = await pool.fetch("SELECT * FROM products")
            tokens = sum(count_tokens(build_text(dict(r), settings.text_template)) for r in rows)
            print(f"{listings:,} demo listings, {tokens / 1e6:.2f}M tokens (cl100k)", flush=True)
            print(
                f"settings: WORKER_CONCURRENCY={settings.batches_in_flight()}, EMBEDDING_CONCURRENCY (max)="
                f"{settings.embedding_concurrency}, BATCH_SIZE={settings.batch_size}, EMBEDDING_BURST_S="
                f"{settings.embedding_burst_s}; limits {'learned from headers' if learn else 'from settings'}",
                flush=True,
            )
            for regime in regimes:
                baseline = await per_item_loop(settings, pool, regime, baseline_s)
                for n in workers:
                    figures = await sync_with_workers(
                        settings, pool, redis, root=root, regime=regime, n=n, learn=learn
                    )
                    print(report(regime, n, (listings, tokens), figures, baseline), flush=True)
            await redis.aclose()
            await pool.close()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-fake":
        asyncio.run(serve_fake(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regimes", default="1M/300ms,5M/300ms,5M/2s", help="tokens per minute / latency")
    parser.add_argument("--workers", default="1,3", help="worker process counts")
    parser.add_argument("--listings", type=int, default=30_000)
    parser.add_argument("--baseline-s", type=float, default=20.0, help="seconds of the per-item loop")
    parser.add_argument(
        "--learn", action="store_true", help="no EMBEDDING_TPM/RPM: learn the limits from headers"
    )
    args = parser.parse_args()
    asyncio.run(
        main(
            [parse_regime(r) for r in args.regimes.split(",")],
            [int(n) for n in args.workers.split(",")],
            args.listings,
            args.baseline_s,
            args.learn,
        )
    )
