"""The offline hashing embedder: deterministic, unit-length, lexical similarity, Hangul-friendly."""

from __future__ import annotations

import numpy as np

from finally_indexer.core.constants import HASHING_MODEL
from finally_indexer.processor.embedders.hashing import HashingEmbedder
from finally_indexer.processor.embedding import Embedder

LISTINGS = [
    "혼다 PCX125 2021년식 판매합니다. 주행거리 12,000km, 출퇴근용, 상태 좋음",
    "혼다 PCX 125 2020년 팝니다 주행 15000키로 관리 잘 된 차량",
    "야마하 XMAX300 검정색 2019년 풀옵션 블랙박스 장착",
    "BMW R1250GS 어드벤처 2022 트리플블랙, 사이드케이스 포함",
]


async def test_shape_norm_and_determinism() -> None:
    embedder = HashingEmbedder(dimensions=64)
    first = await embedder.embed(LISTINGS)
    second = await HashingEmbedder(dimensions=64).embed(LISTINGS)
    assert first.vectors == second.vectors
    assert first.tokens == 0
    matrix = np.array(first.vectors)
    assert matrix.shape == (4, 64)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


async def test_similar_listings_score_higher_than_unrelated() -> None:
    matrix = np.array((await HashingEmbedder(dimensions=512).embed(LISTINGS)).vectors)
    cos = matrix @ matrix.T
    assert cos[0, 1] > cos[0, 2] + 0.2
    assert cos[0, 1] > cos[0, 3] + 0.2
    assert cos[2, 3] < cos[0, 1]


async def test_normalisation_full_width_and_case() -> None:
    embedder = HashingEmbedder(dimensions=128)
    a, b = (await embedder.embed(["\uff30\uff23\uff38\uff11\uff12\uff15  혼다", "pcx125 혼다"])).vectors
    assert np.allclose(a, b)


async def test_protocol_and_partial_api() -> None:
    embedder = HashingEmbedder(dimensions=32)
    assert isinstance(embedder, Embedder)
    assert embedder.model == HASHING_MODEL
    assert embedder.dimensions == 32
    partial = await embedder.embed_many(["a", ""])
    assert partial.rejected == {}
    assert all(v is not None and len(v) == 32 for v in partial.vectors)
    assert embedder.truncate("abcdef", 3) == "abc"
    await embedder.aclose()
