"""One embedding rate budget shared by every worker process: tokens and requests per minute in Redis.

The provider limits an API key per model (tokens per minute, requests per minute); every worker
process spending that key draws on the same limits, so the budget lives in Redis, in one hash per
(key hash, model) (:func:`budget_key`), and is taken atomically by one Lua script.

The algorithm is GCRA (a token bucket written as a *theoretical arrival time*, ``tt`` for tokens
and ``tr`` for requests, in ms): a request of ``n`` tokens pushes ``tt`` forward by ``n`` * 60,000
/ TPM. It may go when ``tt`` is less than ``burst`` ms ahead of now — the test is made *before*
the cost is added, so a request larger than the tolerance still goes (on a quiet budget) and the
ones after it wait its cost off. Unused budget is kept up to ``burst`` ms, which absorbs the gaps
between one worker's requests without ever exceeding the limit over a window.

- **Reserve** (:meth:`RateBudget.reserve`) with the request's cl100k token count, before sending;
  it waits (sleeping the time the script names) while the budget is spent.
- **Settle** (:meth:`RateBudget.settle`) with the usage the API reported: the difference is given
  back or charged. The response's ``x-ratelimit-*`` headers teach the limits when the settings do
  not set them, and ``remaining-*`` pulls the budget down when someone else spends the same key.
- **A 429** (:meth:`RateBudget.rate_limited`) holds every worker for the server's ``retry-after``
  and slows the pace of all of them by ``EMBEDDING_BUDGET_DECREASE`` (AIMD on the shared budget:
  each request answered without a 429 gives ``EMBEDDING_BUDGET_RECOVER`` back).

The clock is Redis's own (``TIME`` inside the script: processes on several hosts agree); tests
pass a fake clock, whose ``now`` is sent to the script instead, and whose ``sleep`` advances it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pydantic import SecretStr
from redis.asyncio import Redis

from finally_indexer.core import constants as c
from finally_indexer.core import metrics
from finally_indexer.core.streams import as_text

__all__ = [
    "BudgetState",
    "Clock",
    "RateBudget",
    "ServerLimits",
    "budget_key",
    "parse_duration",
    "read_budget",
]

#: KEYS[1] = the budget hash. ARGV: op, now ms (< 0: Redis TIME), TPM and RPM from the settings
#: (0: use the learned ones), burst ms, then the op's own arguments:
#: - take <tokens>: 0 (granted) or the ms to wait before asking again;
#: - settle <reserved> <used> <limit t> <limit r> <remaining t> <remaining r> <reset t ms> <reset r ms>
#:   (-1: header absent);
#: - reject <reserved> <hold ms> <limit t> <limit r> (a 429: refund the tokens, hold, slow down).
#: Every op returns {wait ms, TPM, RPM, pace factor * 1e6, tokens used this minute, last minute}.
BUDGET_SCRIPT: Final = f"""
local now = tonumber(ARGV[2])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local op, burst = ARGV[1], tonumber(ARGV[5])
local s = redis.call('HMGET', KEYS[1], 'lt', 'lr', 'tt', 'tr', 'f', 'm', 'um', 'pm', 'probe')
local lt, lr = tonumber(s[1]) or 0, tonumber(s[2]) or 0
local tt, tr = tonumber(s[3]) or now, tonumber(s[4]) or now
local f = tonumber(s[5]) or 1
-- no limits known yet: one request at a time (the probe) until its headers name them; 0 = the
-- server sends none, so nothing is enforced
local probe = tonumber(s[9]) or -1
local minute, used_m, prev_m = tonumber(s[6]) or math.floor(now / 60000), tonumber(s[7]) or 0, tonumber(s[8]) or 0
if math.floor(now / 60000) ~= minute then
  if math.floor(now / 60000) == minute + 1 then prev_m = used_m else prev_m = 0 end
  used_m, minute = 0, math.floor(now / 60000)
end
local function learn(limit_t, limit_r)
  if limit_t > 0 then lt = limit_t end
  if limit_r > 0 then lr = limit_r end
end
local function limits()
  local tpm, rpm = tonumber(ARGV[3]), tonumber(ARGV[4])
  if tpm <= 0 then tpm = lt end
  if rpm <= 0 then rpm = lr end
  return tpm, rpm
end
local tpm, rpm = limits()
local function per(limit) if limit > 0 then return 60000 / (limit * f) end return 0 end
local wait = 0
if op == 'take' then
  local need = tonumber(ARGV[6])
  if tpm > 0 and math.max(tt, now) - now >= burst then wait = math.max(wait, math.max(tt, now) - now - burst + 1) end
  if rpm > 0 and math.max(tr, now) - now >= burst then wait = math.max(wait, math.max(tr, now) - now - burst + 1) end
  if tpm <= 0 and rpm <= 0 and probe ~= 0 then
    if probe > now then wait = {c.EMBEDDING_PROBE_WAIT_MS} else probe = now + {c.EMBEDDING_PROBE_TIMEOUT_MS} end
  end
  if wait == 0 then
    tt = math.max(tt, now) + need * per(tpm)
    tr = math.max(tr, now) + per(rpm)
    used_m = used_m + need
  end
elseif op == 'settle' then
  local reserved, used = tonumber(ARGV[6]), tonumber(ARGV[7])
  learn(tonumber(ARGV[8]), tonumber(ARGV[9]))
  tpm, rpm = limits()
  tt = tt + (used - reserved) * per(tpm)
  used_m = used_m + used - reserved
  probe = 0
  local rem_t, rem_r = tonumber(ARGV[10]), tonumber(ARGV[11])
  local reset_t, reset_r = tonumber(ARGV[12]), tonumber(ARGV[13])
  -- the server saw less room than we think (someone else spends this key too, or requests went
  -- before the limits were known): room left is our room; none left, its reset time is our wait
  if rem_t > 0 and tpm > 0 then tt = math.max(tt, now + burst - rem_t * per(tpm)) end
  if rem_r > 0 and rpm > 0 then tr = math.max(tr, now + burst - rem_r * per(rpm)) end
  if rem_t == 0 and reset_t >= 0 then tt = math.max(tt, now + reset_t) end
  if rem_r == 0 and reset_r >= 0 then tr = math.max(tr, now + reset_r) end
  f = math.min(1, f + {c.EMBEDDING_BUDGET_RECOVER})
elseif op == 'reject' then
  local reserved, hold = tonumber(ARGV[6]), tonumber(ARGV[7])
  learn(tonumber(ARGV[8]), tonumber(ARGV[9]))
  tpm, rpm = limits()
  tt = tt - reserved * per(tpm)
  used_m = used_m - reserved
  probe = 0
  f = math.max({c.EMBEDDING_BUDGET_FLOOR}, f * {c.EMBEDDING_BUDGET_DECREASE})
  tt = math.max(tt, now + hold + burst)
  tr = math.max(tr, now + hold + burst)
end
redis.call('HSET', KEYS[1], 'lt', lt, 'lr', lr, 'tt', tt, 'tr', tr, 'f', f, 'm', minute, 'um', used_m, 'pm', prev_m, 'probe', probe)
redis.call('PEXPIRE', KEYS[1], {c.EMBEDDING_BUDGET_TTL_MS})
return {{math.ceil(wait), tpm, rpm, math.floor(f * 1000000), used_m, prev_m}}
"""


def budget_key(api_key: SecretStr, model: str) -> str:
    """The budget hash of one API key and model (the key itself only as a short SHA-256 prefix)."""
    digest = hashlib.sha256(api_key.get_secret_value().encode()).hexdigest()[:16]
    return f"{c.EMBEDDING_BUDGET_PREFIX}:{digest}:{model}"


class Clock(Protocol):
    """Time for the budget: ``now`` in seconds (None: Redis's clock) and ``sleep``."""

    def now(self) -> float | None: ...

    async def sleep(self, seconds: float) -> None: ...


class _RedisClock:
    """Production: the script reads Redis's ``TIME``; waits are real."""

    def now(self) -> float | None:
        return None

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Seconds of an OpenAI reset header (``"1s"``, ``"6m0s"``, ``"120ms"``, ``"0.5s"``), None if unreadable."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _int(headers: Mapping[str, str], name: str) -> int:
    try:
        return max(0, int(float(headers[name])))
    except (KeyError, ValueError):
        return -1


def _ms(seconds: float | None) -> int:
    return -1 if seconds is None else math.ceil(seconds * 1000)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The ``x-ratelimit-*`` headers of one response (-1 / None: absent)."""

    limit_tokens: int = -1
    limit_requests: int = -1
    remaining_tokens: int = -1
    remaining_requests: int = -1
    reset_tokens_s: float | None = None
    reset_requests_s: float | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | Any) -> ServerLimits:
        if headers is None:
            return cls()
        reset_t, reset_r = headers.get("x-ratelimit-reset-tokens"), headers.get("x-ratelimit-reset-requests")
        return cls(
            limit_tokens=_int(headers, "x-ratelimit-limit-tokens"),
            limit_requests=_int(headers, "x-ratelimit-limit-requests"),
            remaining_tokens=_int(headers, "x-ratelimit-remaining-tokens"),
            remaining_requests=_int(headers, "x-ratelimit-remaining-requests"),
            reset_tokens_s=parse_duration(reset_t) if reset_t else None,
            reset_requests_s=parse_duration(reset_r) if reset_r else None,
        )


@dataclass(frozen=True, slots=True)
class BudgetState:
    """The shared budget as the last script call left it."""

    tokens_per_minute: int
    requests_per_minute: int
    pace: float  # 1.0, or lower after 429s
    tokens_this_minute: int
    tokens_last_minute: int


class RateBudget:
    """The shared budget of one API key and model; every worker process builds one on the same key."""

    def __init__(
        self, redis: Redis, *, key: str, tokens_per_minute: int = 0, requests_per_minute: int = 0,
        burst_s: float = 5.0, clock: Clock | None = None,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._script = redis.register_script(BUDGET_SCRIPT)
        self.key = key
        self._tpm, self._rpm = tokens_per_minute, requests_per_minute
        self._burst_ms = round(burst_s * 1000)
        self._clock: Clock = clock or _RedisClock()
        self.state: BudgetState | None = None

    async def reserve(self, tokens: int) -> float:
        """Take ``tokens`` and one request, waiting while the budget is spent; seconds waited."""
        waited = 0.0
        while (wait := await self.try_reserve(tokens)) > 0:
            await self._clock.sleep(wait)
            waited += wait
        if waited:
            metrics.EMBED_BUDGET_WAIT_SECONDS.inc(waited)
        return waited

    async def try_reserve(self, tokens: int) -> float:
        """Take ``tokens`` and one request if the budget allows now (0.0), else the seconds to wait."""
        wait_ms = await self._run("take", tokens)
        if wait_ms > 0:
            return wait_ms / 1000
        metrics.EMBED_BUDGET_RESERVED.labels(kind="requests").inc()
        return 0.0

    async def settle(self, reserved: int, used: int, server: ServerLimits | None = None) -> None:
        """Correct the reservation by the usage the API reported; learn from its headers."""
        s = server or ServerLimits()
        await self._run(
            "settle",
            reserved,
            used,
            s.limit_tokens,
            s.limit_requests,
            s.remaining_tokens,
            s.remaining_requests,
            _ms(s.reset_tokens_s),
            _ms(s.reset_requests_s),
        )
        metrics.EMBED_BUDGET_RESERVED.labels(kind="tokens").inc(used)

    async def rate_limited(
        self, reserved: int, retry_after_s: float | None, server: ServerLimits | None = None
    ) -> None:
        """A 429: the tokens were not spent, the request was; every worker holds and slows down."""
        s = server or ServerLimits()
        hold = retry_after_s if retry_after_s is not None else s.reset_tokens_s
        hold_ms = math.ceil(1000 * (hold if hold is not None else c.EMBEDDING_DEFAULT_HOLD_S))
        await self._run("reject", reserved, hold_ms, s.limit_tokens, s.limit_requests)

    async def _run(self, op: str, *args: int) -> int:
        now = self._clock.now()
        reply = await self._script(
            keys=[self.key],
            args=[op, -1 if now is None else round(now * 1000), self._tpm, self._rpm, self._burst_ms, *args],
        )
        wait, tpm, rpm, pace, used, last = (int(x) for x in reply)
        self.state = BudgetState(tpm, rpm, pace / 1_000_000, used, last)
        metrics.EMBED_BUDGET_LIMIT.labels(kind="tokens").set(tpm)
        metrics.EMBED_BUDGET_LIMIT.labels(kind="requests").set(rpm)
        metrics.EMBED_BUDGET_PACE.set(pace / 1_000_000)
        return wait


async def read_budget(redis: Redis, key: str) -> dict[str, float]:
    """The budget hash as numbers, for ``/status`` (empty before the first request)."""
    raw: dict[Any, Any] = await redis.hgetall(key)
    out: dict[str, float] = {}
    for name, value in raw.items():
        try:
            out[as_text(name)] = float(value)
        except ValueError:
            continue
    return out
