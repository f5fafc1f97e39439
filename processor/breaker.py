"""A circuit breaker per dependency: while one is down, workers wait instead of churning entries.

Each worker process keeps one :class:`Breaker` per :class:`~.dependencies.Dependency`:

- **closed** (normal): deliveries run; ``BREAKER_FAILURES`` consecutive transient failures blamed on
  the dependency (:func:`~.dependencies.blame`) open it;
- **open**: a delivery that needs the dependency waits (its entries stay claimed by the heartbeat,
  no delivery is counted, nothing is reclaimed) until ``BREAKER_OPEN_S`` have passed;
- **half-open**: one delivery goes through as the probe, the others wait for it; its success closes
  the breaker, a failure on the dependency opens it again for another ``BREAKER_OPEN_S``.

Each lane names the dependencies it needs (the planner never waits on the embedding API). The
state is exported per process as ``finally_indexer_dependency_breaker_state`` and, for ``/health``
in any process, written to Redis by :class:`BreakerBoard` (one hash field per dependency and
worker, with an expiry time, in the hash :func:`board_key`: a worker that died with a breaker open stops being reported). A
Redis breaker cannot be reported through Redis; ``/health`` sees Redis itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any, Final

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from finally_indexer.core.errors import clip, redact
from finally_indexer.core.metrics import BREAKER_STATE
from finally_indexer.core.streams import as_text
from finally_indexer.processor.dependencies import Dependency

__all__ = ["BreakerBoard", "BreakerReport", "Breakers", "State", "board_key", "read_board"]

log = structlog.get_logger(__name__)

#: Characters of the last failure kept as the breaker's reason (logs, metrics, ``/health``).
REASON_CHARS: Final = 300
#: A report in Redis outlives the transition that wrote it this many open periods (at least a
#: minute): an open breaker keeps rewriting it while work flows; a dead worker's report expires.
REPORT_PERIODS: Final = 3
REPORT_MIN_S: Final = 60.0


def board_key(jobs_stream: str) -> str:
    """The hash where workers report breakers that are not closed: beside the jobs stream (same
    Cluster slot, and a deployment's prefix applies), like the failure memory's hashes."""
    return f"{jobs_stream}:breakers"


class State(IntEnum):
    """A breaker's state; the value is the metric's."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(slots=True)
class Breaker:
    """One dependency's breaker (state only; :class:`Breakers` moves it)."""

    dependency: Dependency
    state: State = State.CLOSED
    failures: int = 0  # consecutive transient failures blamed on the dependency
    opened_at: float = 0.0  # monotonic
    since_ms: int = 0  # wall clock of the opening after the last close, for people
    reason: str = ""
    probe: asyncio.Event | None = None  # set when the probe in flight ends


class Breakers:
    """The breakers of one worker process."""

    def __init__(
        self, *, failures: int, open_s: float, board: BreakerBoard | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._threshold = failures
        self._open_s = open_s
        self._board = board
        self._clock = clock
        self._breakers = {d: Breaker(d) for d in Dependency}
        for d in Dependency:
            BREAKER_STATE.labels(dependency=d.value).set(State.CLOSED)

    async def aclose(self) -> None:
        """Wait for the breaker reports still being written (before Redis is closed)."""
        if self._board is not None:
            await self._board.aclose()

    def state(self, dependency: Dependency) -> State:
        """The breaker's current state."""
        return self._breakers[dependency].state

    async def admit(self, needs: Iterable[Dependency]) -> frozenset[Dependency]:
        """Wait while a breaker of ``needs`` is open or probing; return those this caller probes.

        The caller must hand the result back to :meth:`settle` (or :meth:`release`).
        """
        needed = [self._breakers[d] for d in needs]
        while True:
            now = self._clock()
            wait = max(
                (b.opened_at + self._open_s - now for b in needed if b.state is State.OPEN), default=0.0
            )
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            probing = [b.probe for b in needed if b.probe is not None]
            if probing:  # another delivery is the probe: its outcome decides
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(probing[0].wait(), self._open_s)
                continue
            taken = [b for b in needed if b.state is not State.CLOSED]
            for b in taken:  # no await since the checks above: atomic in the event loop
                b.probe = asyncio.Event()
                self._move(b, State.HALF_OPEN)
            return frozenset(b.dependency for b in taken)

    def settle(
        self, needs: Iterable[Dependency], probing: frozenset[Dependency], *,
        failed: Mapping[Dependency, str], succeeded: bool,
    ) -> None:  # fmt: skip
        """Record a delivery's outcome: ``failed`` maps blamed dependencies to the failure's text."""
        for dependency, text in failed.items():
            self._failure(self._breakers[dependency], text)
        if succeeded:
            for dependency in needs:
                b = self._breakers[dependency]
                if dependency in failed:
                    continue
                b.failures = 0
                if dependency in probing and b.state is State.HALF_OPEN:
                    self._move(b, State.CLOSED)
        self.release(probing)

    def release(self, probing: frozenset[Dependency]) -> None:
        """End the probes of ``probing`` (a half-open breaker whose probe told nothing stays so)."""
        for dependency in probing:
            b = self._breakers[dependency]
            if b.probe is not None:
                b.probe.set()
                b.probe = None

    def _failure(self, b: Breaker, text: str) -> None:
        b.failures += 1
        b.reason = clip(redact(text), REASON_CHARS)
        if b.state is State.HALF_OPEN or (b.state is State.CLOSED and b.failures >= self._threshold):
            if b.state is State.CLOSED:  # a failed probe re-opens: the outage started earlier
                b.since_ms = int(time.time() * 1000)
            b.opened_at = self._clock()
            self._move(b, State.OPEN)

    def _move(self, b: Breaker, state: State) -> None:
        was, b.state = b.state, state
        if state is State.CLOSED:
            b.failures, b.reason = 0, ""
        BREAKER_STATE.labels(dependency=b.dependency.value).set(state)
        if state is not was:
            level = log.warning if state is State.OPEN else log.info
            level(
                "breaker_" + state.name.lower(), dependency=b.dependency.value, failures=b.failures,
                reason=b.reason, open_s=self._open_s,
            )  # fmt: skip
            if self._board is not None:
                self._board.report(b, expires_s=max(self._open_s * REPORT_PERIODS, REPORT_MIN_S))


@dataclass(frozen=True, slots=True)
class BreakerReport:
    """A breaker that is not closed, as one worker reported it to Redis."""

    dependency: str
    state: str
    consumer: str
    since_ms: int
    failures: int
    reason: str
    expires_ms: int

    def describe(self, now_ms: int) -> str:
        """One sentence for ``/health``."""
        age = max(0, (now_ms - self.since_ms) // 1000)
        return (
            f"{self.dependency}: breaker {self.state.replace('_', '-')} on {self.consumer} for {age} s "
            f"({self.failures} consecutive transient failures; last: {self.reason}); "
            "its work waits, nothing is dead-lettered"
        )


class BreakerBoard:
    """Writes this worker's breaker transitions to the :func:`board_key` hash (best effort).

    Writes run as background tasks, never awaited by a delivery: when Redis is the dependency
    that is down, a report must not hold the consume path (and a redis-py call is not cancelled
    mid-flight: see ``consume._Heartbeat``).
    """

    def __init__(self, redis: Redis, *, consumer: str, key: str) -> None:
        self._redis = redis
        self._consumer = consumer
        self._key = key
        self._tasks: set[asyncio.Task[None]] = set()

    def report(self, b: Breaker, *, expires_s: float) -> None:
        """Record ``b``'s state (a closed breaker's record is deleted)."""
        task = asyncio.get_running_loop().create_task(self._write(b, expires_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, b: Breaker, expires_s: float) -> None:
        field = f"{b.dependency.value}|{self._consumer}"
        try:
            if b.state is State.CLOSED:
                await self._redis.hdel(self._key, field)
                return
            now_ms = int(time.time() * 1000)
            record = BreakerReport(
                dependency=b.dependency.value, state=b.state.name.lower(), consumer=self._consumer,
                since_ms=b.since_ms or now_ms, failures=b.failures, reason=b.reason,
                expires_ms=now_ms + int(expires_s * 1000),
            )  # fmt: skip
            await self._redis.hset(self._key, field, json.dumps(asdict(record)))
        except (RedisError, OSError) as exc:
            log.warning("breaker_report_failed", dependency=b.dependency.value, error=redact(repr(exc)))

    async def aclose(self) -> None:
        """Wait for the reports still being written."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))


async def read_board(redis: Redis, *, key: str, now_ms: int | None = None) -> list[BreakerReport]:
    """The breakers workers report as not closed; expired records (dead workers) are removed."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    raw: dict[Any, Any] = await redis.hgetall(key)
    live: list[BreakerReport] = []
    expired: list[Any] = []
    for field, value in raw.items():
        try:
            record = BreakerReport(**json.loads(as_text(value)))
        except (ValueError, TypeError):
            expired.append(field)  # unreadable: written by something else
            continue
        if record.expires_ms > now_ms:
            live.append(record)
        else:
            expired.append(field)
    if expired:
        await redis.hdel(key, *expired)
    return sorted(live, key=lambda r: (r.dependency, r.consumer))
