"""Splitting texts into embedding requests within an embedder's limits (a pure function).

Each input longer than ``max_tokens_per_input`` is **truncated** at a token boundary, not chunked:
the product stores one point per listing (point id = product id) and the first 8k tokens of a
listing (title, year, price and mileage come first) describe it better than an average of chunk
vectors would; a listing that long is almost always pasted boilerplate. Requests are then filled
in input order until the next input would exceed ``max_inputs_per_request`` or
``max_tokens_per_request``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from finally_indexer.processor.embedding import EmbeddingLimits

__all__ = ["Batch", "Tokenizer", "fit_input", "pack_count", "plan_batches"]


class Tokenizer(Protocol):
    """What batching needs from a tokenizer (an embedder satisfies it)."""

    def count_tokens(self, text: str) -> int: ...

    def truncate(self, text: str, max_tokens: int) -> str: ...


@dataclass(frozen=True, slots=True)
class Batch:
    """One request: the inputs (possibly truncated), their positions in the caller's list, their tokens."""

    indices: tuple[int, ...]
    inputs: tuple[str, ...]
    tokens: int
    truncated: tuple[int, ...] = ()


def fit_input(text: str, limits: EmbeddingLimits, tokenizer: Tokenizer) -> tuple[str, int, bool]:
    """The input as sent (truncated if too long), its tokens, and whether it was cut."""
    cost = tokenizer.count_tokens(text)
    if cost <= limits.max_tokens_per_input:
        return text, cost, False
    cut = tokenizer.truncate(text, limits.max_tokens_per_input)
    return cut, tokenizer.count_tokens(cut), True


def plan_batches(texts: Sequence[str], limits: EmbeddingLimits, tokenizer: Tokenizer) -> list[Batch]:
    """Cut ``texts`` into requests that respect ``limits``; every index appears in exactly one batch."""
    batches: list[Batch] = []
    current: list[tuple[int, str, bool]] = []
    tokens = 0
    for index, text in enumerate(texts):
        sent, cost, cut = fit_input(text, limits, tokenizer)
        full = len(current) >= limits.max_inputs_per_request or tokens + cost > limits.max_tokens_per_request
        if current and full:
            batches.append(_batch(current, tokens))
            current, tokens = [], 0
        current.append((index, sent, cut))
        tokens += cost
    if current:
        batches.append(_batch(current, tokens))
    return batches


def _batch(items: list[tuple[int, str, bool]], tokens: int) -> Batch:
    return Batch(
        indices=tuple(i for i, _, _ in items),
        inputs=tuple(t for _, t, _ in items),
        tokens=tokens,
        truncated=tuple(i for i, _, cut in items if cut),
    )


def pack_count(tokens: Sequence[int], limits: EmbeddingLimits) -> int:
    """How many of the waiting inputs (their token counts, first come first) the next request takes.

    As many as fit ``max_inputs_per_request`` and ``max_tokens_per_request``, and at least one
    (each input is already within ``max_tokens_per_input``: see :func:`fit_input`); 0 when none wait.
    """
    taken, total = 0, 0
    for cost in tokens:
        if taken >= limits.max_inputs_per_request or (taken and total + cost > limits.max_tokens_per_request):
            break
        taken += 1
        total += cost
    return taken
