"""Failed authentications per client: after too many in a minute, the client gets 429 for a while.

Kept in the process (each API process counts its own clients): enough to make guessing a key
slow; the key's length (``MIN_API_KEY_CHARS``) makes it hopeless. Behind a proxy the client is
the proxy unless uvicorn is told to trust its forwarding headers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["WINDOW_S", "FailureLimiter"]

#: The window failures are counted in.
WINDOW_S: Final = 60.0
#: Clients remembered at most; past it the ones whose last failure is oldest are forgotten first.
MAX_CLIENTS: Final = 10_000


class FailureLimiter:
    """Counts failed authentications per client over the last :data:`WINDOW_S` seconds."""

    def __init__(self, per_window: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or ``None`` when it is not blocked."""
        recent = self._recent(client)
        if recent is None or len(recent) < self._limit:
            return None
        return max(recent[0] + WINDOW_S - self._clock(), 0.0)

    def failed(self, client: str) -> None:
        """Record one failed authentication of ``client``."""
        recent = self._recent(client)
        if recent is None:
            if len(self._failures) >= MAX_CLIENTS:
                del self._failures[next(iter(self._failures))]
            recent = self._failures[client] = deque()
        else:  # most recently failed last: the client evicted first is the one idle longest
            self._failures[client] = self._failures.pop(client)
        recent.append(self._clock())
        while len(recent) > self._limit:  # only the last `limit` matter for the block
            recent.popleft()

    def _recent(self, client: str) -> deque[float] | None:
        recent = self._failures.get(client)
        if recent is None:
            return None
        horizon = self._clock() - WINDOW_S
        while recent and recent[0] <= horizon:
            recent.popleft()
        if not recent:
            del self._failures[client]
            return None
        return recent
