"""An OpenAI-compatible embeddings server for tests: real HTTP on 127.0.0.1, the real response shape.

The real ``openai`` client talks to it through ``base_url``. It answers ``POST /v1/embeddings``
with deterministic unit vectors (seeded by the text, so equal texts get equal vectors), in float
or base64 encoding as asked, and ``usage.prompt_tokens`` counted with cl100k. Behaviours:

- ``fail_next(status, n, retry_after=..., retry_after_ms=...)``: the next ``n`` requests fail
  with ``status`` (429 carries the retry headers), with an OpenAI-style error body;
- ``reject_marker``: any request containing an input with this substring gets 400
  ``invalid_request_error`` (so a client must bisect to find which one);
- ``latency``: seconds each request takes (to observe concurrency, ``max_in_flight``);
- ``limit_rate(tokens_per_minute, requests_per_minute)``: the API's rate limits (see
  :class:`RateLimits`): every answer carries ``x-ratelimit-*`` headers, and a request over the
  limit is answered 429 at once with ``retry-after`` / ``retry-after-ms``;
- ``requests``: every request received (inputs, model, dimensions, headers without
  ``Authorization``, whether a bearer token was sent, the status answered);
- ``start_outage(status, retry_after=...)`` / ``end_outage()``: every request fails with
  ``status`` until the outage ends (``bench/faults.py`` switches it on and off).

A raw asyncio HTTP/1.1 server (keep-alive, Content-Length bodies): no framework, no threads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finally_indexer.processor.embedders.tokens import count_tokens

__all__ = ["FakeOpenAI", "RateLimits", "RecordedRequest"]

NATIVE = {"text-embedding-3-large": 3072, "text-embedding-3-small": 1536}
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    path: str
    model: str | None
    inputs: list[str]
    dimensions: int | None
    encoding_format: str | None
    headers: dict[str, str]
    authorized: bool
    status: int = 0


@dataclass
class _Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


def fake_vector(text: str, dimensions: int) -> list[float]:
    """The deterministic unit vector the fake returns for ``text``."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimensions)
    result: list[float] = (vector / np.linalg.norm(vector)).astype(np.float32).tolist()
    return result


def _error(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# --- rate limits (tokens and requests per minute, like the API's per-key limits) -------------------
def _duration(seconds: float) -> str:
    """The API's reset format: ``"120ms"``, ``"1.5s"``, ``"6m0s"``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s" if minutes else f"{rest:.3g}s"


class RateLimits:
    """Per-minute limits enforced as GCRA with a tolerance of ``burst_s`` seconds of each limit.

    A request is admitted when neither limit is more than ``burst_s`` ahead (checked before its
    cost is added, so one request larger than the tolerance still goes on a quiet key). A rejected
    request still counts against the requests limit, as the API's does. ``remaining`` is what may
    still be started now; ``reset`` the time until the limit is fully replenished.
    """

    def __init__(self, tokens_per_minute: int, requests_per_minute: int, burst_s: float) -> None:
        self.tpm, self.rpm, self.burst = tokens_per_minute, requests_per_minute, burst_s
        self._tt = self._tr = time.monotonic()
        self.tokens = 0  # tokens admitted
        self.rejected = 0  # requests answered 429

    def admit(self, tokens: int) -> tuple[bool, dict[str, str]]:
        """Charge one request of ``tokens``; whether it is admitted, and the headers to answer with."""
        now = time.monotonic()
        tt, tr = max(self._tt, now), max(self._tr, now)
        admitted = tt - now < self.burst and tr - now < self.burst
        self._tr = tr + 60 / self.rpm  # every request counts, admitted or not
        if admitted:
            self._tt = tt + tokens * 60 / self.tpm
            self.tokens += tokens
        else:
            self.rejected += 1
        headers = self._headers(now)
        if not admitted:
            wait = max(tt - now, tr - now) - self.burst + 0.001
            headers |= {"retry-after": f"{math.ceil(wait)}", "retry-after-ms": f"{math.ceil(wait * 1000)}"}
        return admitted, headers

    def _headers(self, now: float) -> dict[str, str]:
        ahead_t, ahead_r = max(0.0, self._tt - now), max(0.0, self._tr - now)
        return {
            "x-ratelimit-limit-tokens": str(self.tpm),
            "x-ratelimit-limit-requests": str(self.rpm),
            "x-ratelimit-remaining-tokens": str(max(0, math.floor((self.burst - ahead_t) * self.tpm / 60))),
            "x-ratelimit-remaining-requests": str(max(0, math.floor((self.burst - ahead_r) * self.rpm / 60))),
            "x-ratelimit-reset-tokens": _duration(ahead_t),
            "x-ratelimit-reset-requests": _duration(ahead_r),
        }


class FakeOpenAI:
    """The server; ``async with FakeOpenAI() as fake:`` then ``base_url=fake.base_url``."""

    def __init__(self, *, reject_marker: str = "<<REJECT>>", default_dimensions: int = 64) -> None:
        self.reject_marker = reject_marker
        self.default_dimensions = default_dimensions
        self.latency = 0.0
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._failures: deque[_Failure] = deque()
        self.rate_limits: RateLimits | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.base_url = ""

    async def __aenter__(self) -> FakeOpenAI:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._connections.values():
            writer.close()
        # Let every handler see its connection close and return, so none is left to be cancelled.
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    # --- behaviours ---------------------------------------------------------------------------------
    def fail_next(
        self, status: int, n: int = 1, *, retry_after: float | None = None, retry_after_ms: int | None = None
    ) -> None:
        """Answer the next ``n`` requests with ``status`` (and retry hints, for 429)."""
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        self._failures.extend(_Failure(status, headers) for _ in range(n))

    def limit_rate(
        self, tokens_per_minute: int, requests_per_minute: int, *, burst_s: float = 10.0
    ) -> RateLimits:
        """Enforce the API's per-minute limits from now on (see :class:`RateLimits`)."""
        self.rate_limits = RateLimits(tokens_per_minute, requests_per_minute, burst_s)
        return self.rate_limits

    @property
    def embedded_inputs(self) -> list[str]:
        """Every input of every successful request, in arrival order."""
        return [text for r in self.requests if r.status == 200 for text in r.inputs]

    # --- HTTP ------------------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (h.split(":", 1) for h in header_lines if ":" in h)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, payload = await self._handle(method, path, headers, body)
                data = json.dumps(payload).encode()
                lines = [
                    f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
                    "content-type: application/json",
                    f"content-length: {len(data)}",
                ]
                lines += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if method != "POST" or not path.rstrip("/").endswith("/embeddings"):
            return 404, {}, _error(f"no route {method} {path}", "invalid_request_error")
        request = json.loads(body or b"{}")
        inputs = request.get("input")
        record = RecordedRequest(
            path=path,
            model=request.get("model"),
            inputs=[inputs] if isinstance(inputs, str) else list(inputs or []),
            dimensions=request.get("dimensions"),
            encoding_format=request.get("encoding_format"),
            headers={k: v for k, v in headers.items() if k != "authorization"},
            authorized=headers.get("authorization", "").startswith("Bearer ")
            and len(headers["authorization"]) > 7,
        )
        self.requests.append(record)
        rate_headers: dict[str, str] = {}
        if self.rate_limits is not None:  # checked on arrival, as the API does: a 429 is immediate
            admitted, rate_headers = self.rate_limits.admit(sum(count_tokens(t) for t in record.inputs))
            if not admitted:
                record.status = 429
                return (
                    429,
                    rate_headers,
                    _error("Rate limit reached (fake).", "requests", code="rate_limit_exceeded"),
                )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            record.status, extra, payload = self._answer(record)
        finally:
            self.in_flight -= 1
        return record.status, rate_headers | extra, payload

    def _answer(self, record: RecordedRequest) -> tuple[int, dict[str, str], dict[str, Any]]:
        if self._failures:
            failure = self._failures.popleft()
            kind = "rate_limit_exceeded" if failure.status == 429 else "server_error"
            return failure.status, failure.headers, _error(f"fake failure {failure.status}", kind)
        if not record.inputs or not all(record.inputs):
            return 400, {}, _error("'$.input' is invalid.", "invalid_request_error")
        if any(self.reject_marker in text for text in record.inputs):
            return (
                400,
                {},
                _error("Invalid input: the model refused one of the inputs.", "invalid_request_error"),
            )
        dimensions = record.dimensions or NATIVE.get(record.model or "", self.default_dimensions)
        data = []
        for index, text in enumerate(record.inputs):
            vector = fake_vector(text, dimensions)
            embedding: Any = vector
            if record.encoding_format == "base64":
                embedding = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        used = sum(count_tokens(text) for text in record.inputs)
        return (
            200,
            {},
            {
                "object": "list",
                "data": data,
                "model": record.model,
                "usage": {"prompt_tokens": used, "total_tokens": used},
            },
        )

    # --- outages: every request fails until the outage ends (bench/faults.py, tests/faults) ---------
    def start_outage(self, status: int, *, retry_after: float | None = None) -> None:
        """Answer every request with ``status`` (and ``retry-after``, for 429) until :meth:`end_outage`."""
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        self._failures = _Endless(_Failure(status, headers))

    def end_outage(self) -> None:
        """Answer normally again (also ends the failures queued by :meth:`fail_next`)."""
        self._failures = deque()


class _Endless(deque[_Failure]):
    """A failure queue that never runs out: ``fail_next``'s queue, one failure served forever."""

    def __init__(self, failure: _Failure) -> None:
        super().__init__([failure])

    def popleft(self) -> _Failure:
        return self[0]
