"""Vector-side benchmark: Qdrant Edge vs qdrant-client local mode, and the hashing embedder.

Run ``python -m bench.vectors`` (or ``python bench/vectors.py``) from the repository root;
``--n 30000`` for the production size. Both stores get the same random unit vectors through
the service's own ``VectorStore`` classes (same batches, same stale-write condition), so the
figures are what the indexer sees. Local mode is the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from qdrant_client import AsyncQdrantClient

from finally_indexer.processor.embedders.hashing import HashingEmbedder
from finally_indexer.processor.stores.qdrant_edge import QdrantEdgeStore
from finally_indexer.processor.stores.qdrant_server import QdrantServerStore
from finally_indexer.processor.vectorstore import ListingPoint, VectorStore

BRANDS = ["혼다", "야마하", "스즈키", "가와사키", "BMW", "할리데이비슨", "두카티", "KTM", "대림", "SYM"]
MODELS = [
    "PCX125",
    "XMAX300",
    "버그만400",
    "닌자400",
    "R1250GS",
    "스트리트글라이드",
    "몬스터821",
    "듀크390",
    "시티100",
    "조이맥스",
]
PHRASES = [
    "출퇴근용으로 타던 차량입니다",
    "상태 아주 좋습니다",
    "블랙박스 장착",
    "엔진오일 최근 교체",
    "사고 이력 없음",
    "네고 가능",
    "직거래 선호",
]


def listing_texts(n: int, seed: int = 7) -> list[str]:
    """Korean listing-like texts of ~300-500 characters."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        b = int(rng.integers(len(BRANDS)))
        body = " ".join(PHRASES[int(j)] for j in rng.integers(len(PHRASES), size=25))
        texts.append(
            f"{BRANDS[b]} {MODELS[b]} {2010 + i % 15}년식\n연식: {2010 + i % 15}년\n가격: {int(rng.integers(50, 3000)) * 10_000:,}원\n"
            f"주행거리: {int(rng.integers(100, 90_000)):,}km\n\n{body}"
        )
    return texts


def batches(n: int, dim: int, batch: int, seed: int = 1) -> Iterator[list[ListingPoint]]:
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch):
        ids = range(start + 1, min(n, start + batch) + 1)
        matrix = rng.standard_normal((len(ids), dim)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        yield [
            ListingPoint(pid, row, 1, "h", {"title": f"매물 {pid}"})
            for pid, row in zip(ids, matrix.tolist(), strict=True)
        ]


def queries(count: int, dim: int) -> list[list[float]]:
    matrix = np.random.default_rng(99).standard_normal((count, dim)).astype(np.float32)
    result: list[list[float]] = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).tolist()
    return result


async def load(store: VectorStore, n: int, dim: int, batch: int) -> float:
    """Points per second for upserting ``n`` points in batches of ``batch`` (generating them not timed)."""
    await store.ensure_collection()
    elapsed = 0.0
    for points in batches(n, dim, batch):
        started = time.perf_counter()
        await store.upsert(points)
        elapsed += time.perf_counter() - started
    return n / elapsed


async def latencies(store: VectorStore, vectors: list[list[float]]) -> tuple[list[float], list[set[int]]]:
    seconds, results = [], []
    for vector in vectors:
        started = time.perf_counter()
        hits = await store.search(vector, limit=10)
        seconds.append(time.perf_counter() - started)
        results.append({h.product_id for h in hits})
    return seconds, results


def ms(values: list[float]) -> str:
    q = statistics.quantiles(values, n=20) if len(values) > 1 else values * 19
    return f"p50 {statistics.median(values) * 1000:8.1f} ms   p95 {q[18] * 1000:8.1f} ms"


async def run(args: argparse.Namespace) -> None:
    print(f"# vectors bench: n={args.n} dim={args.dim} batch={args.batch} queries={args.queries}")
    texts = listing_texts(args.texts)
    embedder = HashingEmbedder(dimensions=args.dim)
    started = time.perf_counter()
    embedder.embed_sync(texts)
    rate = len(texts) / (time.perf_counter() - started)
    print(
        f"hashing embedder        {rate:10,.0f} texts/s   ({len(texts)} texts, ~{sum(map(len, texts)) // len(texts)} chars, dim {args.dim})"
    )

    probe = queries(args.queries, args.dim)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        edge = QdrantEdgeStore(Path(tmp) / "edge", vector_size=args.dim)
        edge_rate = await load(edge, args.n, args.dim, args.batch)
        print(f"edge upsert             {edge_rate:10,.0f} points/s")
        edge_plain, _ = await latencies(edge, probe)
        print(f"edge search (no HNSW)   {ms(edge_plain)}")
        started = time.perf_counter()
        await edge.optimize()
        print(f"edge optimize (HNSW)    {time.perf_counter() - started:10.1f} s")
        edge_hnsw, edge_hits = await latencies(edge, probe)
        print(f"edge search (HNSW)      {ms(edge_hnsw)}")
        await edge.aclose()

    if args.skip_local:
        return
    local = QdrantServerStore(
        AsyncQdrantClient(location=":memory:"),
        collection="bench",
        vector_size=args.dim,
        payload_indexes=False,
    )
    local_rate = await load(local, args.n, args.dim, args.batch)
    print(f"local-mode upsert       {local_rate:10,.0f} points/s   (baseline)")
    local_lat, exact_hits = await latencies(local, probe)
    print(f"local-mode search       {ms(local_lat)}   (baseline, exact)")
    await local.aclose()

    recall = statistics.mean(len(a & b) / max(1, len(b)) for a, b in zip(edge_hits, exact_hits, strict=True))
    print(f"ratio upsert edge/local {edge_rate / local_rate:10.1f} x")
    print(
        f"ratio search local/edge {statistics.median(local_lat) / statistics.median(edge_hnsw):10.1f} x faster with edge HNSW"
    )
    print(f"edge HNSW recall@10     {recall:10.3f}   (vs local mode's exact search)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--n", type=int, default=5_000, help="points to load (default 5,000; production is 30,000)"
    )
    parser.add_argument("--dim", type=int, default=3072, help="vector size (text-embedding-3-large: 3072)")
    parser.add_argument("--batch", type=int, default=64, help="points per upsert (BATCH_SIZE)")
    parser.add_argument("--queries", type=int, default=30, help="searches timed per store")
    parser.add_argument("--texts", type=int, default=5_000, help="texts for the hashing embedder")
    parser.add_argument(
        "--skip-local", action="store_true", help="skip the qdrant-client local-mode baseline"
    )
    parser.add_argument("--tmp", default=None, help="directory for the edge shard (default: system temp)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
