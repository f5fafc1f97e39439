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

Requests are **packed**: every ``embed_many`` call of the process (the batches a worker holds at
once) puts its inputs in one queue, and a dispatcher sends the queue's head as one request as soon
as the adaptive limiter (:mod:`.limiter`) has a free slot — as many inputs as the API allows
(:func:`~.batching.pack_count`: ≤ 2,048 inputs, ≤ 300,000 tokens, each ≤ 8,191). When latency
is the limit, texts queue while every slot is busy and the next request carries all of them.
Each request first reserves its tokens from the shared rate budget (:mod:`.budget`), and settles
with the usage the API reports; a 429 slows every worker sharing the key. A rejected input is
still found by bisection inside its request and fails only its own caller's listing.

Inputs longer than the model's per-input limit are truncated (see ``batching``). ``dimensions``
is sent only when it differs from the model's native size, and every returned vector is checked.
The API key lives in the client only; nothing here logs or prints it.
"""

from __future__ import annotations

import asyncio
import collections
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
from finally_indexer.processor.cost import usd
from finally_indexer.processor.embedders import tokens
from finally_indexer.processor.embedders.batching import fit_input, pack_count
from finally_indexer.processor.embedders.budget import RateBudget, ServerLimits
from finally_indexer.processor.embedders.limiter import AdaptiveLimiter, Outcome, Slot
from finally_indexer.processor.embedding import EmbeddingLimits, EmbeddingResult, PartialEmbeddingResult

__all__ = ["NATIVE_DIMENSIONS", "OpenAIEmbedder", "RetryPolicy"]

log = structlog.get_logger(__name__)

#: Native output sizes; ``dimensions`` is sent only to shorten these (text-embedding-3-* only).
NATIVE_DIMENSIONS = {
    "text-embedding-3-large": 3072,
    "text-embedding-3-small": 1536,
    "text-embedding-ada-002": 1536,
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


@dataclass(frozen=True, slots=True)
class _Done:
    """One input's answer: its vector, or the model's reason for refusing it; its share of the bill."""

    vector: list[float] | None
    reason: str | None
    billed: int


@dataclass(eq=False, slots=True)
class _Waiting:
    """One input in the queue: as sent (truncated if needed), its tokens, and who waits for it."""

    text: str
    tokens: int
    future: asyncio.Future[_Done]


#: (vectors by position, billed tokens, rejection reasons by position) of one span of inputs.
_Span = tuple[dict[int, list[float]], int, dict[int, str]]


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


def _shares(billed: int, weights: list[int]) -> list[int]:
    """``billed`` split in proportion to ``weights`` (cumulative rounding: the shares add up exactly)."""
    total = sum(weights) or 1
    shares, running, given = [], 0, 0
    for weight in weights:
        running += weight
        upto = round(billed * running / total)
        shares.append(upto - given)
        given = upto
    return shares


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
        budget: RateBudget | None = None,
        usd_per_million_tokens: float = 0.0,
    ) -> None:
        """``concurrency`` is the most requests in flight (the limiter adapts below it); without a
        ``budget`` nothing is reserved (tests, or a key no other process shares)."""
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
        self._price = usd_per_million_tokens  # EMBEDDING_PRICES' entry for the model
        self._limiter = AdaptiveLimiter(maximum=concurrency)
        self._budget = budget
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
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

    @property
    def concurrency(self) -> int:
        """The adaptive limiter's current limit on requests in flight (not part of the protocol)."""
        return self._limiter.limit

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
        fitted = await asyncio.to_thread(lambda: [fit_input(texts[i], self._limits, self) for i in todo])
        if cut := sum(1 for _, _, was_cut in fitted if was_cut):
            log.info("embedding_inputs_truncated", n=cut, max_tokens=self._limits.max_tokens_per_input)
        loop = asyncio.get_running_loop()
        waiting = [_Waiting(sent, cost, loop.create_future()) for sent, cost, _ in fitted]
        self._enqueue(waiting)
        outcomes = await asyncio.gather(*(w.future for w in waiting), return_exceptions=True)
        answers: list[_Done] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                # one failed request fails the call; callers expect our own exception types
                raise outcome
            answers.append(outcome)
        billed = 0
        for index, answer in zip(todo, answers, strict=True):
            billed += answer.billed
            if answer.reason is not None:
                rejected[index] = answer.reason
            else:
                vectors[index] = answer.vector
        return PartialEmbeddingResult(vectors=vectors, tokens=billed, rejected=dict(sorted(rejected.items())))

    async def aclose(self) -> None:
        tasks = [t for t in (self._dispatcher, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        closed = TransientError("embedder closed")
        while self._queue:
            waiting = self._queue.popleft()
            if not waiting.future.done():
                waiting.future.set_exception(closed)
        await self._client.close()

    # --- the queue and its dispatcher: packing ----------------------------------------------------
    def _enqueue(self, waiting: list[_Waiting]) -> None:
        self._queue.extend(waiting)
        self._wake.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="embedding-dispatcher")

    def _drop_abandoned(self) -> None:
        """Inputs whose caller went away (cancelled) are not sent."""
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()

    async def _dispatch(self) -> None:
        """Forever: wait for a free slot, then send the queue's head as one packed request."""
        while True:
            self._drop_abandoned()
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            # Texts are waiting; if every slot is busy, latency is what limits us right now.
            slot = await self._limiter.acquire(saturated=self._limiter.busy)
            self._drop_abandoned()
            count = pack_count([w.tokens for w in self._queue], self._limits)
            items = [self._queue.popleft() for _ in range(count)]
            if not items:
                await self._limiter.release(slot)
                continue
            task = asyncio.create_task(self._send(items, slot))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, items: list[_Waiting], slot: Slot) -> None:
        """One packed request (bisected on rejection); every waiting input gets its answer."""
        metrics.EMBED_PACKED_INPUTS.observe(len(items))
        try:
            vectors, billed, rejected = await self._embed_span(
                [w.text for w in items], [w.tokens for w in items], 0, slot
            )
        except Exception as exc:
            for w in items:
                if not w.future.done():
                    w.future.set_exception(exc)
        else:
            if slot.outcome is not Outcome.OVERLOAD:
                slot.outcome = Outcome.OK
            shares = _shares(billed, [0 if p in rejected else w.tokens for p, w in enumerate(items)])
            for position, w in enumerate(items):
                if w.future.done():
                    continue
                if position in rejected:
                    w.future.set_result(_Done(None, rejected[position], 0))
                else:
                    w.future.set_result(_Done(vectors[position], None, shares[position]))
        finally:
            await self._limiter.release(slot)

    # --- one request, bisected on rejection -------------------------------------------------------
    async def _embed_span(self, inputs: list[str], tokens: list[int], start: int, slot: Slot) -> _Span:
        try:
            vectors, billed = await self._request(inputs, tokens, slot)
        except _BatchRejected as exc:
            if len(inputs) == 1:
                log.warning("embedding_input_rejected", position=start, reason=str(exc))
                return {}, 0, {start: str(exc)}
            middle = len(inputs) // 2
            left = await self._embed_span(inputs[:middle], tokens[:middle], start, slot)
            right = await self._embed_span(inputs[middle:], tokens[middle:], start + middle, slot)
            return {**left[0], **right[0]}, left[1] + right[1], {**left[2], **right[2]}
        return {start + i: v for i, v in enumerate(vectors)}, billed, {}

    # --- one request, retried ---------------------------------------------------------------------
    async def _request(
        self, inputs: list[str], tokens: list[int], slot: Slot
    ) -> tuple[list[list[float]], int]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retry.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._call(inputs, sum(tokens), slot)
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

    async def _call(self, inputs: list[str], tokens: int, slot: Slot) -> tuple[list[list[float]], int]:
        """One HTTP request, paid from the shared budget; errors mapped onto the service's
        exception tree; the budget settled; metrics recorded."""
        if self._budget is not None and await self._budget.reserve(tokens) > 0:
            slot.held = True  # the budget, not concurrency, set this request's pace
        started = time.perf_counter()
        status = "error"
        try:
            raw = await self._client.embeddings.with_raw_response.create(
                model=self._model,
                input=inputs,
                dimensions=self._dimensions if self._send_dimensions else openai.omit,
            )
            response = raw.parse()
            status = "ok"
        except openai.RateLimitError as exc:
            status = "rate_limited"
            slot.outcome = Outcome.OVERLOAD
            retry_after = _retry_after(exc.response.headers)
            if self._budget is not None:
                await self._budget.rate_limited(
                    tokens, retry_after, ServerLimits.from_headers(exc.response.headers)
                )
            raise EmbeddingRateLimited(f"embedding API rate limit: {exc.message}", retry_after) from exc
        except openai.APIStatusError as exc:
            status = "rejected" if exc.status_code in _REJECTING_STATUS else "error"
            if exc.status_code >= 500 or exc.status_code in _TRANSIENT_STATUS:
                slot.outcome = Outcome.OVERLOAD
            raise self._status_error(exc) from exc
        except openai.APIConnectionError as exc:  # includes timeouts
            slot.outcome = Outcome.OVERLOAD
            raise TransientError(f"embedding API unreachable: {type(exc).__name__}: {exc.message}") from exc
        finally:
            metrics.EMBED_REQUESTS.labels(status=status).inc()
            metrics.EMBED_SECONDS.observe(time.perf_counter() - started)
        vectors, billed = self._vectors(response, len(inputs)), self._bill(response)
        if self._budget is not None:
            await self._budget.settle(tokens, billed, ServerLimits.from_headers(raw.headers))
        return vectors, billed

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
        metrics.EMBED_COST.labels(model=self._model).inc(usd(billed, self._price))
        return billed
