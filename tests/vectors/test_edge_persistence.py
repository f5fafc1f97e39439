"""Qdrant Edge keeps what it acknowledged: across a clean close, and across a SIGKILL mid-write."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe

from finally_indexer.core.errors import ConfigurationError, DependencyUnavailable
from finally_indexer.processor.stores.qdrant_edge import QdrantEdgeStore
from finally_indexer.processor.vectorstore import ListingPoint, StoredListing

SIZE = 64


def point(pid: int, version: int) -> ListingPoint:
    vector: list[float] = np.random.default_rng(pid).standard_normal(SIZE).tolist()
    return ListingPoint(pid, vector, version, f"h{pid}", {"title": f"t{pid}"})


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path / "shard", vector_size=SIZE)
    await store.ensure_collection()
    await store.upsert([point(i, 10 + i) for i in range(1, 101)])
    await store.delete([50])
    await store.aclose()

    reopened = QdrantEdgeStore(tmp_path / "shard", vector_size=SIZE)
    await reopened.ensure_collection()
    assert await reopened.count() == 99
    assert await reopened.get([1, 50, 100]) == {
        1: StoredListing(1, 11, "h1"),
        100: StoredListing(100, 110, "h100"),
    }
    await reopened.upsert([point(1, 5)])  # the stale-write rule still holds after reopening
    assert (await reopened.get([1]))[1].version == 11
    assert (await reopened.search(point(7, 0).vector, limit=1))[0].product_id == 7
    await reopened.aclose()


async def test_a_second_process_cannot_open_the_same_shard(tmp_path: Path) -> None:
    first = QdrantEdgeStore(tmp_path / "shard", vector_size=SIZE)
    await first.ensure_collection()
    second = QdrantEdgeStore(tmp_path / "shard", vector_size=SIZE)
    with pytest.raises(DependencyUnavailable, match="another process"):
        await second.ensure_collection()
    await first.aclose()


async def test_wrong_vector_size_is_a_configuration_error(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path / "shard", vector_size=SIZE)
    await store.ensure_collection()
    await store.upsert([point(1, 1)])
    await store.aclose()
    with pytest.raises(ConfigurationError, match="VECTOR_SIZE"):
        await QdrantEdgeStore(tmp_path / "shard", vector_size=SIZE * 2).ensure_collection()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from finally_indexer.processor.stores.qdrant_edge import QdrantEdgeStore
    from finally_indexer.processor.vectorstore import ListingPoint

    async def main() -> None:
        store = QdrantEdgeStore(sys.argv[1], vector_size={size})
        await store.ensure_collection()
        batch = 0
        while True:  # until killed
            ids = range(batch * 50 + 1, batch * 50 + 51)
            await store.upsert([ListingPoint(i, [float(i % 11 + j) for j in range({size})], 1, "h", {{}}) for i in ids])
            print(batch, flush=True)  # acknowledged: the upsert returned
            batch += 1

    asyncio.run(main())
    """
).format(size=SIZE)


@pytest.mark.slow
async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert writer.stdout is not None
    acknowledged = -1
    async with asyncio.timeout(60):
        while acknowledged < 20:  # at least 1,050 points acknowledged, the writer still going
            line = await writer.stdout.readline()
            assert line, (await writer.stderr.read()).decode() if writer.stderr else "writer exited"
            acknowledged = int(line)
    os.kill(writer.pid, signal.SIGKILL)  # mid-write: the next upsert is in flight
    await writer.wait()
    assert writer.returncode == -signal.SIGKILL
    acknowledged = max([acknowledged, *(int(x) for x in (await writer.stdout.read()).split())])

    store = QdrantEdgeStore(path, vector_size=SIZE)
    await store.ensure_collection()
    expected = set(range(1, (acknowledged + 1) * 50 + 1))
    stored = await store.get(sorted(expected))
    assert set(stored) == expected
    assert await store.count() >= len(expected)  # the in-flight batch may or may not have landed
    await store.aclose()


async def test_a_cancelled_caller_keeps_the_shard_locked_until_its_thread_ends(tmp_path: Path) -> None:
    """A caller's timeout must not let a second thread into the shard while the first still runs."""
    store = QdrantEdgeStore(tmp_path / "shard", vector_size=8)
    await store.ensure_collection()
    release, finished = threading.Event(), threading.Event()

    def slow(_shard: object) -> None:
        release.wait(5)
        finished.set()

    async def let_go_soon() -> None:
        await asyncio.sleep(0.2)
        release.set()

    helper = asyncio.create_task(let_go_soon())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await store._run("slow", slow)
    assert finished.is_set()  # the timeout was only delivered once the thread had ended
    await helper
    assert await store.count() == 0  # and the store works afterwards
    await store.aclose()


def _payload_indexes(path: Path) -> set[str]:
    """The payload fields ``path``'s shard indexes (opened and closed here, in this thread)."""
    shard = qe.EdgeShard.load(str(path), None)
    try:
        return set(shard.info().payload_schema)
    finally:
        shard.close()


async def test_the_shard_keeps_no_payload_index_in_memory(tmp_path: Path) -> None:
    """Edge keeps a payload index of an appendable segment in RAM (``python bench/audit.py``: a
    1M-point collection opened at 589 MB of anonymous memory with the ``version`` index, 185 MB
    without), and the stale-write guard does not need one: its clauses name point ids. A shard created with the index
    by an earlier version loses it when it is next opened, and the guard holds on it."""
    fresh = QdrantEdgeStore(tmp_path / "fresh", vector_size=SIZE)
    await fresh.ensure_collection()
    await fresh.upsert([point(1, 10)])
    await fresh.aclose()
    assert _payload_indexes(tmp_path / "fresh") == set()

    older = qe.EdgeShard.create(
        str(tmp_path / "older"),
        qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=SIZE, distance=qe.Distance.Cosine)),
    )
    older.update(qe.UpdateOperation.create_field_index("version", qe.PayloadSchemaType.Integer))
    older.close()
    assert _payload_indexes(tmp_path / "older") == {"version"}
    store = QdrantEdgeStore(tmp_path / "older", vector_size=SIZE)
    await store.ensure_collection()
    await store.upsert([point(1, 10)])
    await store.upsert([point(1, 5)])  # stale: refused without the index too
    assert (await store.get([1]))[1].version == 10
    await store.aclose()
    assert _payload_indexes(tmp_path / "older") == set()
