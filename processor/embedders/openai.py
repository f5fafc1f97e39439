"""``OpenAIEmbedder``: the OpenAI embeddings API (or any compatible server through ``base_url``).

The client's own retries are off (``max_retries=0``); this module owns the policy, so every
attempt is counted, logged and bounded:

- 429 → wait what ``retry-after-ms`` / ``retry-after`` asks (capped), else back off; after the
  last attempt raise :class:`EmbeddingRateLimited` (transient, carries the hint).
- 408/409/5xx, timeouts, connection errors → exponential backoff with jitter; after the last
  attempt raise :class:`TransientError`.
- 400/422 for a batch → the batch is bisected until the one input the model refuses is found;
  only that input is reported (``embed_many``) or raised as ``EmbeddingInputRejected(index=…)``
  (``embed``). A 400 naming another parameter (``model``, ``dimensions``) is a configuration
  problem, as are 401/403/404: :class:`ConfigurationError`, never blamed on a listing.

Inputs longer than the model's per-input limit are truncated (see ``batching``). ``dimensions``
is sent only when it differs from the model's native size, and every returned vector is checked.
The API key lives in the client only; nothing here logs or prints it.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
import structlog
from pydantic import SecretStr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from finally_indexer.core import constants as c
from finally_indexer.core import metrics
from finally_indexer.core.errors import (
    ConfigurationError,
    EmbeddingInputRejected,
    EmbeddingRateLimited,
    TransientError,
)
from finally_indexer.processor.embedders import tokens
from finally_indexer.processor.embedders.batching import Batch, plan_batches
from finally_indexer.processor.embedding import EmbeddingLimits, EmbeddingResult, PartialEmbeddingResult

__all__ = ["NATIVE_DIMENSIONS", "OpenAIEmbedder", "RetryPolicy"]

log = structlog.get_logger(__name__)

#: Native output sizes; ``dimensions`` is sent only to shorten these (text-embedding-3-* only).
NATIVE_DIMENSIONS = {
    "text-embedding-3-large": 3072,
    "text-embedding-3-small": 1536,
    "text-embedding-ada-002": 1536,
}
#: US dollars per 1M input tokens (published price list); unknown models are not priced.
USD_PER_MILLION_TOKENS = {
    "text-embedding-3-large": c.OPENAI_USD_PER_MILLION_TOKENS,
    "text-embedding-3-small": 0.02,
    "text-embedding-ada-002": 0.10,
}
_TRANSIENT_STATUS = frozenset({408, 409})
_REJECTING_STATUS = frozenset({400, 422})
_CONFIG_STATUS = frozenset({401, 403, 404})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one request is retried before the failure goes back to the caller (as transient)."""

    max_attempts: int = 6
    initial_backoff: float = 0.5  # seconds; doubles per attempt, plus up to ``jitter`` seconds
    max_backoff: float = 30.0
    jitter: float = 1.0
    #: A server asking for a longer pause gets this much; the stream entry is retried later anyway.
    max_retry_after: float = 60.0
    request_timeout: float = 60.0


class _BatchRejected(Exception):
    """Internal: the model refused the request because of (at least) one of its inputs."""


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (number or HTTP date), if present."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value.strip() else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


class OpenAIEmbedder:
    """Embeds through ``/v1/embeddings`` with token-aware batches, bounded concurrency and our retries."""

    def __init__(
        self,
        *,
        api_key: SecretStr,
        model: str = c.OPENAI_MODEL,
        dimensions: int = c.VECTOR_SIZE,
        base_url: str | None = None,
        concurrency: int = 4,
        max_input_tokens: int = c.OPENAI_MAX_TOKENS_PER_INPUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._model = model
        self._dimensions = dimensions
        self._retry = retry or RetryPolicy()
        self._limits = EmbeddingLimits(
            max_inputs_per_request=c.OPENAI_MAX_INPUTS_PER_REQUEST,
            max_tokens_per_request=c.OPENAI_MAX_TOKENS_PER_REQUEST,
            max_tokens_per_input=min(max_input_tokens, c.OPENAI_MAX_TOKENS_PER_INPUT),
        )
        native = NATIVE_DIMENSIONS.get(model)
        self._send_dimensions = native is not None and native != dimensions
        self._price = USD_PER_MILLION_TOKENS.get(model, 0.0)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._backoff = wait_exponential_jitter(
            multiplier=self._retry.initial_backoff, max=self._retry.max_backoff, jitter=self._retry.jitter
        )
        self._client = openai.AsyncOpenAI(
            api_key=api_key.get_secret_value(),
            base_url=base_url,
            max_retries=0,
            timeout=self._retry.request_timeout,
        )

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self._model!r}, dimensions={self._dimensions}, base_url={str(self._client.base_url)!r})"

    # --- the Embedder protocol -------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self._model

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def limits(self) -> EmbeddingLimits:
        return self._limits

    def count_tokens(self, text: str) -> int:
        return tokens.count_tokens(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        return tokens.truncate_tokens(text, max_tokens)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """All vectors, or :class:`EmbeddingInputRejected` naming the first input the model refused."""
        result = await self.embed_many(texts)
        if result.rejected:
            index = min(result.rejected)
            raise EmbeddingInputRejected(result.rejected[index], index=index)
        return EmbeddingResult(vectors=[v for v in result.vectors if v is not None], tokens=result.tokens)

    async def embed_many(self, texts: Sequence[str]) -> PartialEmbeddingResult:
        """Vectors in input order, ``None`` (with a reason in ``rejected``) for inputs the model refused."""
        vectors: list[list[float] | None] = [None] * len(texts)
        rejected: dict[int, str] = {}
        for index, text in enumerate(texts):
            if not text.strip():
                rejected[index] = "empty input"  # the API answers 400 for an empty string
        todo = [i for i in range(len(texts)) if i not in rejected]
        batches = await asyncio.to_thread(plan_batches, [texts[i] for i in todo], self._limits, self)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._embed_batch(batch)) for batch in batches]
        except BaseExceptionGroup as failed:
            # One failed request fails the call (the others are cancelled); callers expect our own
            # exception types, not a group.
            raise failed.exceptions[0] from None
        billed = 0
        for batch, task in zip(batches, tasks, strict=True):
            batch_vectors, batch_tokens, batch_rejected = task.result()
            billed += batch_tokens
            for position, vector in batch_vectors.items():
                vectors[todo[batch.indices[position]]] = vector
            for position, reason in batch_rejected.items():
                rejected[todo[batch.indices[position]]] = reason
            if batch.truncated:
                log.info(
                    "embedding_inputs_truncated",
                    n=len(batch.truncated),
                    max_tokens=self._limits.max_tokens_per_input,
                )
        return PartialEmbeddingResult(vectors=vectors, tokens=billed, rejected=dict(sorted(rejected.items())))

    async def aclose(self) -> None:
        await self._client.close()

    # --- one batch, bisected on rejection ---------------------------------------------------------
    async def _embed_batch(self, batch: Batch) -> tuple[dict[int, list[float]], int, dict[int, str]]:
        """Vectors and rejections keyed by position within ``batch``; billed tokens."""
        return await self._embed_span(list(batch.inputs), 0)

    async def _embed_span(
        self, inputs: list[str], start: int
    ) -> tuple[dict[int, list[float]], int, dict[int, str]]:
        try:
            vectors, billed = await self._request(inputs)
        except _BatchRejected as exc:
            if len(inputs) == 1:
                log.warning("embedding_input_rejected", position=start, reason=str(exc))
                return {}, 0, {start: str(exc)}
            middle = len(inputs) // 2
            left = await self._embed_span(inputs[:middle], start)
            right = await self._embed_span(inputs[middle:], start + middle)
            return {**left[0], **right[0]}, left[1] + right[1], {**left[2], **right[2]}
        return {start + i: v for i, v in enumerate(vectors)}, billed, {}

    # --- one request, retried ---------------------------------------------------------------------
    async def _request(self, inputs: list[str]) -> tuple[list[list[float]], int]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retry.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._call(inputs)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, EmbeddingRateLimited) and error.retry_after is not None:
            return min(error.retry_after, self._retry.max_retry_after)
        return float(self._backoff(state))

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else None
        log.warning(
            "embedding_retry",
            attempt=state.attempt_number,
            error=type(error).__name__,
            detail=str(error),
            wait_s=wait,
        )

    async def _call(self, inputs: list[str]) -> tuple[list[list[float]], int]:
        """One HTTP request; errors mapped onto the service's exception tree; metrics recorded."""
        started = time.perf_counter()
        status = "error"
        try:
            async with self._semaphore:
                response = await self._client.embeddings.create(
                    model=self._model,
                    input=inputs,
                    dimensions=self._dimensions if self._send_dimensions else openai.omit,
                )
            status = "ok"
        except openai.RateLimitError as exc:
            status = "rate_limited"
            raise EmbeddingRateLimited(
                f"embedding API rate limit: {exc.message}", _retry_after(exc.response.headers)
            ) from exc
        except openai.APIStatusError as exc:
            status = "rejected" if exc.status_code in _REJECTING_STATUS else "error"
            raise self._status_error(exc) from exc
        except openai.APIConnectionError as exc:  # includes timeouts
            raise TransientError(f"embedding API unreachable: {type(exc).__name__}: {exc.message}") from exc
        finally:
            metrics.EMBED_REQUESTS.labels(status=status).inc()
            metrics.EMBED_SECONDS.observe(time.perf_counter() - started)
        return self._vectors(response, len(inputs)), self._bill(response)

    def _status_error(self, exc: openai.APIStatusError) -> Exception:
        code = exc.status_code
        if code in _REJECTING_STATUS and exc.param in (None, "input"):
            return _BatchRejected(exc.message)
        if code in _REJECTING_STATUS or code in _CONFIG_STATUS:
            return ConfigurationError(f"embedding API refused the request ({code}): {exc.message}")
        if code >= 500 or code in _TRANSIENT_STATUS:
            return TransientError(f"embedding API error {code}: {exc.message}")
        return TransientError(f"embedding API unexpected status {code}: {exc.message}")

    def _vectors(self, response: Any, expected: int) -> list[list[float]]:
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != expected:
            raise TransientError(f"embedding API returned {len(data)} vectors for {expected} inputs")
        vectors = [list(item.embedding) for item in data]
        if any(len(v) != self._dimensions for v in vectors):
            raise ConfigurationError(
                f"embedding model {self._model!r} returned {len(vectors[0])} dimensions, VECTOR_SIZE is {self._dimensions}"
            )
        return vectors

    def _bill(self, response: Any) -> int:
        billed = int(getattr(response.usage, "prompt_tokens", 0) or 0)
        metrics.EMBED_TOKENS.labels(model=self._model).inc(billed)
        metrics.EMBED_COST.labels(model=self._model).inc(billed * self._price / 1_000_000)
        return billed
