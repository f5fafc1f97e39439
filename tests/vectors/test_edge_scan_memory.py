"""A full scan of the edge store does not leave the payload storage in the process's memory.

Measured before the fix with ``python bench/audit.py --sizes 1000000``: the audit ended with
355 MB of file-backed pages resident (the payload storage it had read once), 576 MB peak RSS.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest

from finally_indexer.processor.stores import qdrant_edge
from finally_indexer.processor.stores.mapped_pages import release_mapped
from finally_indexer.processor.stores.points import SCROLL_PAGE
from finally_indexer.processor.stores.qdrant_edge import PAYLOAD_STORAGE_DIR, QdrantEdgeStore
from finally_indexer.processor.vectorstore import ListingPoint

SIZE = 8
POINTS = 40_000
#: Scroll pages between releases in this test: a window of 5,000 points, an eighth of them.
RELEASE_PAGES = 5


def description(pid: int) -> str:
    """A listing-sized text that does not compress (the engine compresses payloads)."""
    return f"{pid} {base64.b64encode(random.Random(pid).randbytes(600)).decode()}"


def resident_bytes(folder: Path) -> int:
    """Bytes of this process's memory mapped from files in ``folder``'s payload storage and resident."""
    total, counting = 0, False
    prefix = f"{folder.resolve()}/"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            path = fields[5] if len(fields) > 5 else ""
            counting = path.startswith(prefix) and f"/{PAYLOAD_STORAGE_DIR}/" in path
        elif counting and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


async def test_a_scan_hands_the_payload_pages_it_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qdrant_edge, "SCAN_RELEASE_PAGES", RELEASE_PAGES)
    store = QdrantEdgeStore(tmp_path / "shard", vector_size=SIZE)
    await store.ensure_collection()
    for first in range(1, POINTS + 1, 2_000):
        await store.upsert([
            ListingPoint(i, [0.1] * SIZE, i, f"h{i}", {"title": description(i)})
            for i in range(first, first + 2_000)
        ])  # fmt: skip
    await store.aclose()

    store = QdrantEdgeStore(tmp_path / "shard", vector_size=SIZE)
    await store.ensure_collection()
    if release_mapped(tmp_path / "shard", PAYLOAD_STORAGE_DIR) == 0:
        pytest.skip("this kernel refuses MADV_PAGEOUT (Linux < 5.4): the scan cannot release pages")
    # blocks written, not the files' length: the engine grows its page files sparse, 32 MiB at a time
    stored = sum(
        f.stat().st_blocks * 512 for f in (tmp_path / "shard").rglob("*") if PAYLOAD_STORAGE_DIR in f.parts
    )
    seen, peak = 0, 0
    async for listing in store.scan():
        seen += 1
        assert listing.payload["title"] == description(listing.product_id)
        if seen % 1_000 == 0:
            peak = max(peak, resident_bytes(tmp_path / "shard"))
    after = resident_bytes(tmp_path / "shard")
    await store.aclose()

    assert seen == POINTS
    assert stored > 20 * 2**20  # the payloads are on disk, uncompressed enough to measure
    window = RELEASE_PAGES * SCROLL_PAGE
    # between two releases a scan holds about one window's payloads (an eighth), never all of them
    assert peak < stored * (window / POINTS) * 2, (peak, stored)
    assert after < stored / 10, (after, stored)
