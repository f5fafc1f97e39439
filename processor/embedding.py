"""The ``Embedder`` interface: turns texts into vectors and declares its own batch limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class EmbeddingLimits:
    """What one request to the embedder may carry."""

    max_inputs_per_request: int
    max_tokens_per_request: int
    max_tokens_per_input: int


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """Vectors in input order, and the tokens the provider billed (0 when it is free)."""

    vectors: list[list[float]]
    tokens: int


@dataclass(frozen=True, slots=True)
class PartialEmbeddingResult:
    """Like :class:`EmbeddingResult`, but one rejected input does not fail the others.

    ``vectors[i]`` is ``None`` exactly when ``i`` is a key of ``rejected``, whose value is the
    model's reason (the caller fails only those listings, permanently).
    """

    vectors: list[list[float] | None]
    tokens: int
    rejected: dict[int, str]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of ``dimensions`` floats.

    ``embed`` takes any number of texts and splits them into requests within ``limits``.
    It raises :class:`~finally_indexer.core.errors.TransientError` for failures worth retrying
    and :class:`~finally_indexer.core.errors.EmbeddingInputRejected` (with the offending index)
    when the model refuses one input.
    """

    @property
    def model(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    @property
    def limits(self) -> EmbeddingLimits: ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs with this model's tokenizer."""
        ...

    def truncate(self, text: str, max_tokens: int) -> str:
        """``text`` cut to at most ``max_tokens`` tokens (deliberately, at a token boundary)."""
        ...

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult: ...

    async def embed_many(self, texts: Sequence[str]) -> PartialEmbeddingResult:
        """Like ``embed``, but inputs the model refuses are reported in ``rejected`` instead of raising."""
        ...

    async def aclose(self) -> None: ...
