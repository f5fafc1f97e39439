"""``plan_batches``: table-driven, with a whitespace tokenizer (one word = one token)."""

from __future__ import annotations

import pytest

from finally_indexer.processor.embedders.batching import Batch, pack_count, plan_batches
from finally_indexer.processor.embedding import EmbeddingLimits


class Words:
    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        return " ".join(text.split()[:max_tokens])


def w(n: int) -> str:
    return " ".join(["t"] * n)


CASES = [
    pytest.param([], EmbeddingLimits(4, 100, 10), [], id="nothing"),
    pytest.param(
        [w(1)] * 3, EmbeddingLimits(4, 100, 10), [Batch((0, 1, 2), (w(1),) * 3, 3)], id="one-request"
    ),
    pytest.param(
        [w(1)] * 5,
        EmbeddingLimits(2, 100, 10),
        [Batch((0, 1), (w(1),) * 2, 2), Batch((2, 3), (w(1),) * 2, 2), Batch((4,), (w(1),), 1)],
        id="max-inputs",
    ),
    pytest.param(
        [w(4), w(4), w(4)],
        EmbeddingLimits(10, 8, 10),
        [Batch((0, 1), (w(4), w(4)), 8), Batch((2,), (w(4),), 4)],
        id="max-tokens-exactly-full",
    ),
    pytest.param(
        [w(5), w(4), w(1)],
        EmbeddingLimits(10, 8, 10),
        [Batch((0,), (w(5),), 5), Batch((1, 2), (w(4), w(1)), 5)],
        id="max-tokens-next-does-not-fit",
    ),
    pytest.param(
        [w(2), w(30), w(2)],
        EmbeddingLimits(10, 100, 10),
        [Batch((0, 1, 2), (w(2), w(10), w(2)), 14, truncated=(1,))],
        id="long-input-truncated",
    ),
    pytest.param(
        [w(8), w(30)],
        EmbeddingLimits(10, 12, 10),
        [Batch((0,), (w(8),), 8), Batch((1,), (w(10),), 10, truncated=(1,))],
        id="truncated-input-starts-next-request",
    ),
]


@pytest.mark.parametrize(("texts", "limits", "expected"), CASES)
def test_plan_batches(texts: list[str], limits: EmbeddingLimits, expected: list[Batch]) -> None:
    assert plan_batches(texts, limits, Words()) == expected


@pytest.mark.parametrize("n", [1, 7, 64, 1000])
def test_every_index_once_in_order(n: int) -> None:
    texts = [w(1 + i % 13) for i in range(n)]
    limits = EmbeddingLimits(16, 40, 9)
    batches = plan_batches(texts, limits, Words())
    assert [i for b in batches for i in b.indices] == list(range(n))
    for b in batches:
        assert len(b.indices) <= limits.max_inputs_per_request
        assert b.tokens <= limits.max_tokens_per_request
        assert all(len(t.split()) <= limits.max_tokens_per_input for t in b.inputs)


OPENAI = EmbeddingLimits(2048, 300_000, 8191)
PACK_CASES = [
    pytest.param([], OPENAI, 0, id="nothing-waits"),
    pytest.param([10] * 5, OPENAI, 5, id="everything-fits"),
    pytest.param([1] * 3000, OPENAI, 2048, id="at-most-2048-inputs"),
    pytest.param([8191] * 40, OPENAI, 36, id="at-most-300k-tokens"),
    pytest.param([150_000, 150_000, 1], OPENAI, 2, id="300k-tokens-exactly"),
    pytest.param([150_000, 150_001], OPENAI, 1, id="one-token-over"),
    pytest.param([267] * 1200, OPENAI, 1123, id="demo-listings"),
    pytest.param([5, 5, 5], EmbeddingLimits(2, 100, 10), 2, id="small-input-limit"),
    pytest.param(
        [120], EmbeddingLimits(4, 100, 200), 1, id="an-input-alone-over-the-request-limit-still-goes"
    ),
]


@pytest.mark.parametrize(("tokens", "limits", "expected"), PACK_CASES)
def test_pack_count(tokens: list[int], limits: EmbeddingLimits, expected: int) -> None:
    """The next request takes the longest head of the queue that respects every limit."""
    taken = pack_count(tokens, limits)
    assert taken == expected
    if taken > 1:
        assert taken <= limits.max_inputs_per_request
        assert sum(tokens[:taken]) <= limits.max_tokens_per_request
    if taken < len(tokens) and taken:
        head = tokens[: taken + 1]
        assert len(head) > limits.max_inputs_per_request or sum(head) > limits.max_tokens_per_request
