"""A full disk under the edge store is an outage, not a crash.

Qdrant Edge writes through memory-mapped sparse files: on a full disk the page fault of a write
kills the process with SIGBUS (measured: ``bench/faults.py`` store-disk-full, the worker died
with -7). The store refuses writes while its disk is nearly full (``DependencyUnavailable``:
transient, retried, never dead-lettered) and writes again once space is freed. The writes run in
a child process on a tmpfs of its own, so that a regression kills the child, not the test run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
from faultlab.disk import can_mount, tmpfs

HERE = Path(__file__).resolve().parent

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from faultlab.disk import FILLER, fill
    from finally_indexer.core.errors import DependencyUnavailable
    from finally_indexer.processor.stores.qdrant_edge import QdrantEdgeStore
    from finally_indexer.processor.vectorstore import ListingPoint

    def points(first):
        return [ListingPoint(i, [float(i % 7 + j) for j in range(64)], 1, "h", {}) for i in range(first, first + 64)]

    async def main():
        disk = Path(sys.argv[1])
        store = QdrantEdgeStore(disk / "shard", vector_size=64)
        await store.ensure_collection()
        await store.upsert(points(1))
        fill(disk)
        for first in (1000, 2000):  # a new batch, then another: pages the shard never touched
            try:
                await store.upsert(points(first))
                print("written", flush=True)
            except DependencyUnavailable as exc:
                print("refused", exc, flush=True)
        (disk / FILLER).unlink()
        await store.upsert(points(3000))
        print("count", await store.count(), flush=True)
        await store.aclose()

    asyncio.run(main())
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
async def test_writes_on_a_full_disk_are_refused_as_an_outage_then_resume(tmp_path: Path) -> None:
    if not await asyncio.to_thread(can_mount):
        pytest.skip("this root may not mount a tmpfs")
    async with tmpfs(tmp_path / "disk", size=96 * 1024 * 1024) as disk:
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(disk), env=os.environ | {"PYTHONPATH": str(HERE.parent)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(writer.communicate(), 60)
    lines = out.decode().splitlines()
    assert writer.returncode != -signal.SIGBUS, f"killed by SIGBUS after {lines}"
    assert writer.returncode == 0, err.decode()[-2000:]
    assert [line.split()[0] for line in lines] == ["refused", "refused", "count"]
    assert "MiB free on its disk" in lines[0]
    assert lines[-1] == "count 128"  # the first batch and the one after the space was freed
