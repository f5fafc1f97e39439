"""The cost arithmetic shared by the indexer's accounting and the dry run (pure functions)."""

from __future__ import annotations

import pytest

from finally_indexer.processor.cost import Usage, expected_duration_s, requests_needed, usd
from finally_indexer.processor.embedding import EmbeddingLimits

LIMITS = EmbeddingLimits(
    max_inputs_per_request=2048, max_tokens_per_request=300_000, max_tokens_per_input=8191
)


@pytest.mark.parametrize(
    ("inputs", "tokens", "requests"),
    [
        (0, 0, 0),  # nothing to embed: no request
        (1, 0, 1),  # a free embedder still makes its call
        (64, 20_000, 1),
        (2048, 20_000, 1),
        (2049, 20_000, 2),  # the input cap
        (64, 300_000, 1),
        (64, 300_001, 2),  # the token cap
        (5000, 700_000, 3),  # the slower of the two
    ],
)
def test_requests_needed(inputs: int, tokens: int, requests: int) -> None:
    assert requests_needed(inputs, tokens, LIMITS) == requests


def test_usd_is_per_million_tokens() -> None:
    assert usd(1_000_000, 0.13) == pytest.approx(0.13)
    assert usd(11_905_844, 0.13) == pytest.approx(1.5478, abs=1e-4)
    assert usd(123, 0.0) == 0.0


@pytest.mark.parametrize(
    ("tpm", "rpm", "seconds"),
    [
        (0, 0, None),  # the budget is unknown
        (1_000_000, 0, 600.0),  # 10M tokens at 1M/min
        (0, 100, 6.0),  # 10 requests at 100/min
        (1_000_000, 2, 600.0),  # tokens are the slower limit (requests: 300 s)
        (10_000_000, 1, 600.0),  # requests are: 10 at 1/min
    ],
)
def test_expected_duration_takes_the_slower_known_limit(tpm: int, rpm: int, seconds: float | None) -> None:
    assert expected_duration_s(Usage(tokens=10_000_000, requests=10), tpm=tpm, rpm=rpm) == seconds


def test_usage_adds_up() -> None:
    assert Usage(10, 1) + Usage(5, 2) == Usage(15, 3)
