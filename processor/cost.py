"""What embedding costs: a batch's usage, its price in US dollars, the requests it needs, and how
long a number of tokens takes at a rate budget.

Pure functions, shared by the indexer (which accounts what a batch used) and the dry run (which
estimates what a job would use), so the estimate and the real run count the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from finally_indexer.processor.embedding import EmbeddingLimits

__all__ = ["Usage", "expected_duration_s", "requests_needed", "usd"]

#: Prices are per this many tokens (the providers' published unit).
TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True, slots=True)
class Usage:
    """Embedding tokens (as billed, or as estimated) and requests."""

    tokens: int = 0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.tokens + other.tokens, self.requests + other.requests)


def requests_needed(inputs: int, tokens: int, limits: EmbeddingLimits) -> int:
    """The requests one embedding call of ``inputs`` texts (``tokens`` in all) needs within ``limits``.

    The fewest that respect both the per-request input and token caps; the embedder fills requests
    greedily, which needs one more only when the texts' sizes fall badly, and a rejected input's
    bisection adds some. With batches packed together (several batches in one request) the provider
    sees fewer: this is the batch's own need, the figure a requests-per-minute budget is paid in.
    """
    if inputs <= 0:
        return 0
    by_inputs = math.ceil(inputs / limits.max_inputs_per_request)
    by_tokens = math.ceil(tokens / limits.max_tokens_per_request)
    return max(by_inputs, by_tokens)


def usd(tokens: int, usd_per_million: float) -> float:
    """US dollars ``tokens`` cost at ``usd_per_million`` per 1M tokens."""
    return tokens * usd_per_million / TOKENS_PER_PRICE_UNIT


def expected_duration_s(usage: Usage, *, tpm: int = 0, rpm: int = 0) -> float | None:
    """Seconds ``usage`` takes at ``tpm`` tokens and ``rpm`` requests per minute; the slower limit wins.

    A limit of 0 is unknown (not configured, or not learned yet); None when both are.
    """
    bounds = [usage.tokens / tpm if tpm > 0 else None, usage.requests / rpm if rpm > 0 else None]
    known = [minutes for minutes in bounds if minutes is not None]
    return round(max(known) * 60, 1) if known else None
