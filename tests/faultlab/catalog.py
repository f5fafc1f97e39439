"""The faults: each acts on a running :class:`~faultlab.lab.Lab` and returns when the fault is over.

Every fault is a real one: processes are signalled, servers stopped, restarted or flushed, the
embeddings server (``tests/fakes/openai_server.py``, over HTTP) fails every request, the edge
store's filesystem is filled to the last byte. Sizes and durations come from the lab's
:class:`~faultlab.lab.Scale`. :data:`FAULTS` is the table ``bench/faults.py`` prints and
``tests/faults/`` runs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from faultlab.disk import FILLER, fill
from faultlab.lab import PAYLOAD_MAX_BYTES, Fault, Lab, Outcome, Scale, run_fault
from faultlab.payloads import mixed_payloads
from finally_indexer.processor.embedders.openai import RetryPolicy

__all__ = ["FAULTS", "FaultSpec", "run"]

#: Payloads per LPUSH while the bad payloads are sent.
PUSH_CHUNK: Final = 200


@dataclass(frozen=True)
class FaultSpec:
    """A fault and what its run needs."""

    inject: Fault
    what: str  # one line for the table in docs/reliability.md
    embedder: str = "hashing"  # "openai": the worker embeds through the fake embeddings server
    store_disk: bool = False  # the edge store gets a filesystem of its own (mount: root only)
    needs_minutes: bool = False  # the embedding client's 60 s request timeout: bench only
    #: It acts at chosen moments of the sync: at a scale with ``pace_s`` the sync is paced so
    #: that work is left at each of them (the offline embedder ends 400 listings in about a second).
    paced: bool = False


async def none(lab: Lab) -> None:
    """No fault: the baseline (time, memory) of the same run."""


async def _at_random_moments(lab: Lab, count: int, act: Callable[[], object]) -> int:
    """Run ``act`` ``count`` times at random points of the sync, each after the (restarted) worker
    handled at least one more batch; how many ran before the sync ended."""
    rng = random.Random(lab.scale.seed)
    marks = sorted(rng.uniform(0.2, 0.9) for _ in range(count))
    done = 0
    for mark in marks:
        handled, total, _ = await lab.progress()
        share = max(mark, (handled + lab.scale.batch_size) / total) if total else mark
        if not await lab.until_progress(share):
            break
        await asyncio.sleep(rng.uniform(0, 0.3))
        if (await lab.progress())[2] in ("completed", "failed"):
            break  # it would hit no work
        result = act()
        if asyncio.iscoroutine(result):
            await result
        done += 1
    return done


async def sigkill(lab: Lab) -> None:
    """The worker is killed with SIGKILL ``kills`` times at random moments, and restarted each time."""
    done = await _at_random_moments(lab, lab.scale.kills, lab.worker.kill)
    lab.note = f"{done} kills"
    if done < lab.scale.kills:
        lab.shortfall = f"the sync ended after {done} of {lab.scale.kills} kills"


async def sigterm(lab: Lab) -> None:
    """The worker gets SIGTERM under load ``sigterms`` times (a graceful stop), and is restarted."""
    stops: list[float] = []

    async def stop() -> None:
        started = time.monotonic()
        await lab.worker.terminate()
        stops.append(time.monotonic() - started)

    done = await _at_random_moments(lab, lab.scale.sigterms, stop)
    lab.note = f"{done} stops, longest {max(stops, default=0):.1f}s"
    if done < lab.scale.sigterms:
        lab.shortfall = f"the sync ended after {done} of {lab.scale.sigterms} stops"


async def redis_restart(lab: Lab) -> None:
    """Redis is shut down (its AOF flushed) and started again on the same port."""
    lab.redis_server.preferred_port = lab.redis_server.port
    await asyncio.to_thread(lab.redis_server.stop)
    await asyncio.to_thread(lab.redis_server.start)


async def redis_flushall(lab: Lab) -> None:
    """Redis loses every key (a restart without its AOF, a failover to an empty replica)."""
    client = lab.redis()
    await client.flushall()
    await client.aclose()


async def _postgres_down(lab: Lab, seconds: float) -> None:
    lab.postgres.preferred_port = lab.postgres.port
    await asyncio.to_thread(lab.postgres.stop)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(lab.postgres.start)
    lab.note = f"{seconds:g}s down"


async def postgres_stop(lab: Lab) -> None:
    """PostgreSQL is stopped for ``postgres_stop_s``."""
    await _postgres_down(lab, lab.scale.postgres_stop_s)


async def postgres_stop_long(lab: Lab) -> None:
    """PostgreSQL is stopped for ``postgres_long_stop_s``: far longer than MAX_DELIVERIES reclaims."""
    await _postgres_down(lab, lab.scale.postgres_long_stop_s)


async def _embedding_outage(lab: Lab, status: int, retry_after: float | None = None) -> None:
    assert lab.embeddings is not None
    lab.embeddings.start_outage(status, retry_after=retry_after)
    try:
        await asyncio.sleep(lab.scale.embedding_outage_s)
    finally:
        lab.embeddings.end_outage()
    lab.note = f"{lab.scale.embedding_outage_s:g}s of {status}"


async def embedding_5xx(lab: Lab) -> None:
    """The embeddings API answers every request with 500."""
    await _embedding_outage(lab, 500)


async def embedding_429(lab: Lab) -> None:
    """The embeddings API answers every request with 429 (retry-after: 1)."""
    await _embedding_outage(lab, 429, retry_after=1)


async def embedding_timeout(lab: Lab) -> None:
    """The embeddings API answers no request before the client's timeout (60 s) runs out."""
    assert lab.embeddings is not None
    lab.embeddings.latency = RetryPolicy().request_timeout + 5
    try:
        await asyncio.sleep(lab.scale.embedding_outage_s)
    finally:
        lab.embeddings.latency = 0.0
    lab.note = f"{lab.scale.embedding_outage_s:g}s unanswered"


async def store_disk_full(lab: Lab) -> None:
    """The edge store's disk is full for ``disk_full_s`` (every byte taken by another file)."""
    assert lab.store_disk is not None
    written = await asyncio.to_thread(fill, lab.store_disk)
    try:
        await asyncio.sleep(lab.scale.disk_full_s)
    finally:
        (lab.store_disk / FILLER).unlink()
    lab.note = f"{lab.scale.disk_full_s:g}s full ({written // 2**20} MiB filler)"


async def bad_payloads(lab: Lab) -> None:
    """``bad_payloads`` generated bad legacy payloads LPUSHed among ``valid_jobs`` valid jobs."""
    scale = lab.scale
    payloads, valid = mixed_payloads(
        scale.bad_payloads, scale.valid_jobs, seed=scale.seed, max_bytes=PAYLOAD_MAX_BYTES,
        listings=scale.listings,
    )  # fmt: skip
    lab.bad_sent, lab.extra_jobs = scale.bad_payloads, valid
    client = lab.redis()
    try:
        for start in range(0, len(payloads), PUSH_CHUNK):
            await client.lpush(lab.settings.legacy_list, *payloads[start : start + PUSH_CHUNK])
    finally:
        await client.aclose()
    lab.note = f"{scale.bad_payloads} bad + {scale.valid_jobs} valid"


FAULTS: Final[dict[str, FaultSpec]] = {
    "none": FaultSpec(none, "no fault: the baseline of the same run"),
    "sigkill": FaultSpec(
        sigkill, "the worker is killed with SIGKILL at random moments and restarted", paced=True
    ),
    "sigterm": FaultSpec(sigterm, "the worker is stopped with SIGTERM under load and restarted", paced=True),
    "redis-restart": FaultSpec(redis_restart, "Redis is shut down (AOF flushed) and started again"),
    "redis-flushall": FaultSpec(redis_flushall, "Redis loses every key (FLUSHALL)"),
    "postgres-stop": FaultSpec(postgres_stop, "PostgreSQL is stopped, then started again"),
    "postgres-stop-long": FaultSpec(postgres_stop_long, "PostgreSQL is stopped for minutes"),
    "embedding-5xx": FaultSpec(embedding_5xx, "the embeddings API answers 500", embedder="openai"),
    "embedding-429": FaultSpec(embedding_429, "the embeddings API answers 429", embedder="openai"),
    "embedding-timeout": FaultSpec(
        embedding_timeout,
        "the embeddings API answers nothing in time",
        embedder="openai",
        needs_minutes=True,
    ),
    "store-disk-full": FaultSpec(store_disk_full, "the edge store's disk is full", store_disk=True),
    "bad-payloads": FaultSpec(bad_payloads, "bad legacy payloads among valid jobs"),
}


async def run(name: str, scale: Scale, folder: Path) -> Outcome:
    """Run the fault ``name`` of :data:`FAULTS` once on fresh servers in ``folder``."""
    spec = FAULTS[name]
    paced = spec.paced and scale.pace_s > 0
    return await run_fault(
        name, spec.inject, scale, folder, embedder="openai" if paced else spec.embedder,
        latency=scale.pace_s if paced else 0.0, store_disk=spec.store_disk,
    )  # fmt: skip
