"""The audit: each way the index can drift is counted exactly, and ``repair`` brings drift to 0.

Runs on qdrant-client's local mode and on the in-process edge store (the ``store`` fixture is
overridden here with both).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pipeline.helpers import add_listings, assert_converged, push, wait_until
from redis.asyncio import Redis

from finally_indexer.core import metrics
from finally_indexer.core.settings import Settings
from finally_indexer.db import audit as audit_queries
from finally_indexer.processor import audit as audit_module
from finally_indexer.processor import audit_merge, audit_rows
from finally_indexer.processor.audit import AuditBusy, Auditor, changed_after, run_scheduled
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.texts import build_text, datetime_of
from finally_indexer.processor.vectorstore import ListingPoint, VectorStore

LISTINGS = 20
DRIFTED = {"missing": 1, "stale": 1, "ghost": 1, "wrong_flag": 1, "wrong_model": 1}


@pytest.fixture(params=["local", "edge"])
async def store(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> AsyncIterator[VectorStore]:
    """The collection on qdrant-client's local mode (in memory) and on the edge engine (on disk)."""
    path = Path(":memory:") if request.param == "local" else tmp_path / "edge"
    vectors = build_vector_store(
        settings.model_copy(update={"vector_store": request.param, "qdrant_path": path})
    )
    await vectors.ensure_collection()
    yield vectors
    await vectors.aclose()


@pytest.fixture
def auditor(pool: asyncpg.Pool[Any], redis: Redis, store: VectorStore, settings: Settings) -> Auditor:
    return Auditor(pool=pool, redis=redis, store=store, settings=settings)


async def _indexed(pipeline: Pipeline, redis: Redis, settings: Settings) -> None:
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await pipeline.drain()


async def _corrupt_each_way(pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings) -> None:
    await store.delete([1])  # a point removed by hand
    await pool.execute(  # a row edited without a job
        "UPDATE products SET content = '몰래 고침', updated_at = updated_at + interval '1 second' WHERE id = 2"
    )
    await pool.execute("UPDATE products SET is_conversion = false WHERE id = 3")  # a flag flipped
    held = (await store.get([4]))[4]  # a point written by another model (same version and text)
    vector = [0.5] * settings.vector_size
    await store.upsert([ListingPoint(4, vector, held.version, held.text_hash, {"model": "another-model"})])
    await store.upsert([ListingPoint(999, vector, 1, "x", {"model": settings.model_name()})])  # no such row


async def test_a_converged_index_has_no_drift(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings, auditor: Auditor
) -> None:
    await add_listings(pool, 1, LISTINGS)
    await _indexed(pipeline, redis, settings)

    report = await auditor.run()

    assert report["status"] == "completed"
    assert report["counts"] == {
        "ok": LISTINGS,
        "missing": 0,
        "stale": 0,
        "ghost": 0,
        "wrong_flag": 0,
        "wrong_model": 0,
    }
    assert (report["listings"], report["points"]) == (LISTINGS, LISTINGS)
    assert report["duration_s"] > 0


async def test_each_kind_of_drift_is_counted_and_repaired(
    *, pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings,
    auditor: Auditor,
) -> None:  # fmt: skip
    await add_listings(pool, 1, LISTINGS)
    await _indexed(pipeline, redis, settings)
    await _corrupt_each_way(pool, store, settings)

    found = await auditor.run()

    assert found["counts"] == {"ok": LISTINGS - 4, **DRIFTED}
    assert found["samples"] == {
        "missing": [1],
        "stale": [2],
        "wrong_flag": [3],
        "wrong_model": [4],
        "ghost": [999],
    }
    assert found["repair_job_ids"] == []  # an audit without repair changes nothing
    assert await pool.fetchval("SELECT is_conversion FROM products WHERE id = 3") is False

    repaired = await auditor.run(repair=True)

    assert repaired["counts"] == found["counts"]
    assert repaired["flags_corrected"] == 1
    jobs = await pool.fetch(
        "SELECT operation, force, product_ids, source FROM index_jobs WHERE job_id = ANY($1) ORDER BY operation, force",
        repaired["repair_job_ids"],
    )
    assert [(j["operation"], j["force"], sorted(j["product_ids"]), j["source"]) for j in jobs] == [
        ("sync", False, [1, 2, 999], "audit"),
        ("sync", True, [4], "audit"),
    ]
    await pipeline.drain()  # the repairs run through the ordinary pipeline
    after = await auditor.run()
    assert after["counts"] == {
        "ok": LISTINGS,
        "missing": 0,
        "stale": 0,
        "ghost": 0,
        "wrong_flag": 0,
        "wrong_model": 0,
    }
    await assert_converged(pool, store, settings)


async def test_drift_newer_than_the_watermark_is_counted_in_flight_apart(
    *, pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings,
    auditor: Auditor,
) -> None:  # fmt: skip
    await add_listings(pool, 1, LISTINGS)
    await _indexed(pipeline, redis, settings)
    await _corrupt_each_way(pool, store, settings)
    newest = await pool.fetchval("SELECT max(updated_at) FROM products")

    found = await auditor.run()

    # every corruption was made before the audit started: none is in flight
    assert found["counts"] == {"ok": LISTINGS - 4, **DRIFTED}
    assert found["in_flight"] == 0
    assert found["in_flight_after"] == found["newest_row_at"] == newest

    # judged against an older watermark, the same drift is in flight — but for the point of another
    # model, which no edit makes; the verdicts are the same
    since_epoch = await auditor.run(in_flight_after=0)

    assert since_epoch["counts"] == found["counts"]
    assert since_epoch["in_flight"] == sum(DRIFTED.values()) - DRIFTED["wrong_model"]
    assert since_epoch["in_flight_after"] == datetime_of(0)
    assert since_epoch["newest_row_at"] == newest


def test_a_listing_is_in_flight_when_its_row_or_its_point_is_newer_than_the_watermark() -> None:
    def row(version: int | None) -> audit_rows.ListingRow:
        return audit_rows.ListingRow(1, version, None, True, None, {})

    assert changed_after(10, row(11), None)  # edited after the watermark, no point yet
    assert changed_after(10, row(9), 11)  # the row was read before an edit whose sync then landed
    assert changed_after(10, None, 11)  # deleted after a sync that followed the watermark
    assert not changed_after(10, row(10), 10)  # not newer: the watermark's own version
    assert not changed_after(10, row(None), 3)  # no updated_at, an old point
    assert not changed_after(10, None, 3)  # a ghost with an old point: it cannot be dated


async def test_a_point_for_a_deleted_row_version_is_a_ghost(
    *, pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings,
    auditor: Auditor,
) -> None:  # fmt: skip
    await add_listings(pool, 1, 3)
    await _indexed(pipeline, redis, settings)
    held = (await store.get([2]))[2]
    await push(redis, settings, {"operation": "delete", "product_ids": [2]})
    await pipeline.drain()
    assert (await auditor.run())["counts"]["ok"] == 3  # the row stays, deleted: rightly absent

    vector = [0.5] * settings.vector_size  # an old snapshot restored behind the service's back
    await store.upsert(
        [ListingPoint(2, vector, held.version, held.text_hash, {"model": settings.model_name()})]
    )

    report = await auditor.run(repair=True)
    assert report["samples"] == {"ghost": [2]}
    await pipeline.drain()
    assert sum(n for v, n in (await auditor.run())["counts"].items() if v != "ok") == 0
    assert await store.get([2]) == {}


async def test_one_audit_at_a_time(redis: Redis, auditor: Auditor, pool: asyncpg.Pool[Any]) -> None:
    lock = redis.lock(auditor.lock_key(), timeout=30)
    assert await lock.acquire()  # as another worker's audit would
    try:
        with pytest.raises(AuditBusy, match="already running"):
            await auditor.run()
    finally:
        await lock.release()
    assert (await auditor.run())["status"] == "completed"
    assert await pool.fetchval("SELECT count(*) FROM audit_reports") == 1


async def test_reports_are_kept_up_to_the_limit_and_feed_the_gauges(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings
) -> None:
    auditor = Auditor(
        pool=pool, redis=redis, store=store, settings=settings.model_copy(update={"audit_keep_reports": 2})
    )
    await add_listings(pool, 1, 2)
    await _indexed(pipeline, redis, settings)
    await store.delete([1])
    for _ in range(3):
        await auditor.run()

    assert await pool.fetchval("SELECT count(*) FROM audit_reports") == 2
    assert metrics.AUDIT_LISTINGS.labels(verdict="missing")._value.get() == 1
    assert metrics.AUDIT_DRIFT_STREAK._value.get() == 2  # both kept reports found drift
    assert metrics.AUDIT_LAST_COMPLETED._value.get() > 0


async def test_scheduled_audits_run_once_per_interval_across_workers(
    pool: asyncpg.Pool[Any], redis: Redis, store: VectorStore, settings: Settings
) -> None:
    """Two workers wake every 0.4 s: the lock and the latest report keep it to one audit per interval."""
    workers = [Auditor(pool=pool, redis=redis, store=store, settings=settings) for _ in range(2)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run_scheduled(w, interval_s=0.4, stop=stop)) for w in workers]

    async def three_audits() -> bool:
        return bool(await pool.fetchval("SELECT count(*) >= 3 FROM audit_reports"))

    await wait_until(three_audits)
    stop.set()
    await asyncio.gather(*tasks)

    started = [
        r["started_at"] for r in await pool.fetch("SELECT started_at FROM audit_reports ORDER BY started_at")
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(started)]
    assert min(gaps) >= 0.4 * 0.9


async def test_flag_corrections_are_applied_in_bounded_chunks(
    *, pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings, auditor: Auditor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """However many flags are wrong, a repair holds at most ``FLAG_CHUNK`` of them at a time."""
    await add_listings(pool, 1, 5)
    await _indexed(pipeline, redis, settings)
    await pool.execute("UPDATE products SET is_conversion = false")
    monkeypatch.setattr(audit_module, "FLAG_CHUNK", 2)
    chunks: list[int] = []
    correct_flags = audit_queries.correct_flags

    async def recorded(db: Any, fixes: Sequence[tuple[int, bool, Any]]) -> int:
        chunks.append(len(fixes))
        return await correct_flags(db, fixes)

    monkeypatch.setattr(audit_queries, "correct_flags", recorded)

    report = await auditor.run(repair=True)

    assert report["counts"]["wrong_flag"] == 5
    assert report["flags_corrected"] == 5
    assert chunks == [2, 2, 1]
    assert await pool.fetchval("SELECT bool_and(is_conversion) FROM products") is True
    assert sum(n for v, n in (await auditor.run())["counts"].items() if v != "ok") == 0


async def test_keyset_pages_smaller_than_the_table_give_the_same_verdicts(
    *, pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings,
    auditor: Auditor, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    await add_listings(pool, 1, LISTINGS)
    await _indexed(pipeline, redis, settings)
    await _corrupt_each_way(pool, store, settings)
    whole = await auditor.run()

    monkeypatch.setattr(audit_module, "PAGE", 3)  # keyset pages across the whole table
    monkeypatch.setattr(audit_module, "READ_AHEAD_BATCH", 4)  # and scroll batches out of step with them
    paged = await auditor.run(repair=True)

    assert paged["counts"] == whole["counts"] == {"ok": LISTINGS - 4, **DRIFTED}
    assert paged["samples"] == whole["samples"]
    assert paged["flags_corrected"] == 1
    await pipeline.drain()
    assert sum(n for v, n in (await auditor.run())["counts"].items() if v != "ok") == 0


def _count_renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the rows the audit renders (and hashes) to judge their points' text hashes."""
    rendered: list[int] = []

    def counted(row: Any, template: str) -> str:
        rendered.append(int(row["id"]))
        return build_text(row, template)

    monkeypatch.setattr(audit_rows, "build_text", counted)
    return rendered


async def test_points_the_indexer_wrote_are_judged_by_their_source_keys_without_rendering(
    *, pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings, auditor: Auditor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    await add_listings(pool, 1, LISTINGS)
    await _indexed(pipeline, redis, settings)
    rendered = _count_renders(monkeypatch)

    report = await auditor.run()

    assert report["counts"]["ok"] == LISTINGS
    assert rendered == []  # every key matched: no row rendered


async def test_what_a_source_key_cannot_vouch_for_is_rendered_and_judged_as_before(
    *, pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings,
    auditor: Auditor, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    await add_listings(pool, 1, LISTINGS)
    await _indexed(pipeline, redis, settings)
    # a row edited in place, its updated_at kept: only its text tells
    await pool.execute("UPDATE products SET content = content || ' 몰래' WHERE id = 5")
    # a text hash edited by hand, the source key kept
    held = (await store.get([6]))[6]
    assert held.source_key is not None
    await store.upsert([ListingPoint(6, [0.5] * settings.vector_size, held.version, "0" * 64, held.payload)])
    # an edit that leaves the text as it was (surrounding blanks are stripped): the key differs, the text not
    await pool.execute("UPDATE products SET title = title || '   ' WHERE id = 7")
    # a point written without a key (by an indexer from before keys), right otherwise
    held = (await store.get([8]))[8]
    keyless = {k: v for k, v in held.payload.items() if k != "source_key"}
    await store.delete([8])
    await store.upsert([ListingPoint(8, [0.5] * settings.vector_size, held.version, held.text_hash, keyless)])
    rendered = _count_renders(monkeypatch)

    report = await auditor.run()

    assert report["samples"] == {"stale": [5, 6]}
    assert sorted(rendered) == [5, 6, 7, 8]


async def test_another_template_makes_every_point_stale(
    *, pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings,
) -> None:  # fmt: skip
    await add_listings(pool, 1, LISTINGS)
    await _indexed(pipeline, redis, settings)
    other = settings.model_copy(update={"text_template": "{title}\n{content}"})

    report = await Auditor(pool=pool, redis=redis, store=store, settings=other).run()

    assert report["counts"]["stale"] == LISTINGS


async def test_the_collector_spares_what_the_process_held_during_an_audit_and_only_then(
    *, pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings, auditor: Auditor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    await add_listings(pool, 1, LISTINGS)
    await _indexed(pipeline, redis, settings)
    frozen_while_judging: list[int] = []

    class Watched(audit_merge.PageJudge):
        def judge(self, *args: Any, **kwargs: Any) -> tuple[int, list[audit_merge.Judged]]:
            frozen_while_judging.append(gc.get_freeze_count())
            return super().judge(*args, **kwargs)

    monkeypatch.setattr(audit_module, "PageJudge", Watched)
    assert gc.get_freeze_count() == 0

    await auditor.run()

    assert frozen_while_judging
    assert min(frozen_while_judging) > 0  # the modules, the fixtures...
    assert gc.get_freeze_count() == 0  # handed back to the collector
