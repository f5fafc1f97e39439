"""The offline embedder: character n-grams of the normalised text, feature-hashed, L2-normalised.

No model, no network, deterministic across processes and machines. It measures *lexical*
similarity: listings that share words and syllables (same brand, model name, displacement, year)
score higher than unrelated ones. Hangul needs no word segmentation: every syllable is one code
point, so 2-4 character grams capture syllable pairs and short words.

Each n-gram is hashed (a multiply-xorshift mix of its code points, computed with numpy over the
whole text at once) to a dimension and a sign; counts are damped with ``log1p`` so a repeated
word does not dominate, then the vector is scaled to unit length (cosine = dot product).
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from finally_indexer.core.constants import HASHING_MODEL
from finally_indexer.processor.embedding import EmbeddingLimits, EmbeddingResult, PartialEmbeddingResult

__all__ = ["HashingEmbedder"]

_NGRAM_SIZES = (2, 3, 4)
_SPACES = re.compile(r"\s+")
_U64 = np.uint64
#: Odd 64-bit constants (from splitmix64) used to mix code points into n-gram hashes.
_MULT = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)
#: Per-size seeds so the 2-gram "ab" and the 3-gram "ab " never share a hash by construction.
_SEEDS = {n: _U64(0x2545F4914F6CDD1D * n & 0xFFFFFFFFFFFFFFFF) for n in _NGRAM_SIZES}
#: Offline texts may be long; there is no request limit, only the work one call does.
_MAX_INPUTS = 100_000
_MAX_TOTAL_CHARS = 1 << 30


def _normalise(text: str) -> str:
    """NFKC (full-width digits and letters → ASCII, compatibility Jamo → Hangul), lowercase, one space."""
    return " " + _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip() + " "


def _mix(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    h = (h ^ (h >> _U64(30))) * _MIX1
    h = (h ^ (h >> _U64(27))) * _MIX2
    return h ^ (h >> _U64(31))


def _ngram_hashes(codepoints: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """One 64-bit hash per character n-gram, for every n in ``_NGRAM_SIZES``."""
    parts = []
    for n in _NGRAM_SIZES:
        count = codepoints.size - n + 1
        if count <= 0:
            continue
        h = np.full(count, _SEEDS[n], dtype=np.uint64)
        for offset in range(n):
            h = (h ^ codepoints[offset : offset + count]) * _MULT
        parts.append(_mix(h))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def _text_hashes(text: str) -> npt.NDArray[np.uint64]:
    codepoints = np.frombuffer(_normalise(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return _ngram_hashes(codepoints)


def hash_vectors(texts: Sequence[str], dimensions: int) -> npt.NDArray[np.float32]:
    """One unit-length row per text (all zeros for a text without any n-gram), in one bincount."""
    per_text = [_text_hashes(text) for text in texts]
    rows = np.repeat(np.arange(len(per_text), dtype=np.intp), [h.size for h in per_text])
    hashes = np.concatenate(per_text) if per_text else np.zeros(0, dtype=np.uint64)
    cells = rows * dimensions + (hashes % _U64(dimensions)).astype(np.intp)
    sign = np.where((hashes >> _U64(63)) == 0, 1.0, -1.0)
    counts = np.bincount(cells, weights=sign, minlength=len(per_text) * dimensions)
    matrix = (np.sign(counts) * np.log1p(np.abs(counts))).reshape(len(per_text), dimensions)
    lengths = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(lengths > 0, lengths, 1.0)).astype(np.float32)


class HashingEmbedder:
    """Deterministic offline embedder (model :data:`~finally_indexer.core.constants.HASHING_MODEL`).

    "Tokens" are characters here: the embedder is free, so results report 0 billed tokens.
    """

    def __init__(self, *, dimensions: int, max_input_chars: int = 8191 * 4) -> None:
        self._dimensions = dimensions
        # Not a provider limit: a cap so one pasted novel costs no more than a long listing.
        self._limits = EmbeddingLimits(_MAX_INPUTS, _MAX_TOTAL_CHARS, max_input_chars)

    def __repr__(self) -> str:
        return f"HashingEmbedder(model={HASHING_MODEL!r}, dimensions={self._dimensions})"

    @property
    def model(self) -> str:
        return HASHING_MODEL

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def limits(self) -> EmbeddingLimits:
        return self._limits

    def count_tokens(self, text: str) -> int:
        return len(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        return text[:max_tokens]

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """The vectors, computed in the calling thread (``embed`` runs this in a worker thread)."""
        cap = self._limits.max_tokens_per_input
        matrix = hash_vectors([text[:cap] for text in texts], self._dimensions)
        vectors: list[list[float]] = matrix.tolist()
        return vectors

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        vectors = await asyncio.to_thread(self.embed_sync, list(texts))
        return EmbeddingResult(vectors=vectors, tokens=0)

    async def embed_many(self, texts: Sequence[str]) -> PartialEmbeddingResult:
        result = await self.embed(texts)
        return PartialEmbeddingResult(vectors=list(result.vectors), tokens=0, rejected={})

    async def aclose(self) -> None:
        return None
