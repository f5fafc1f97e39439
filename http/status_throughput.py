"""For ``/status``: listings processed per minute, from the events stream's ``batch_indexed`` entries.

The tracker keeps per-minute buckets in memory and reads only the entries added since its last
call, so a dashboard polling every two seconds costs one short XRANGE, not a re-read of the
window.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import structlog
from pydantic import ValidationError
from redis.asyncio import Redis

from finally_indexer.core.streams import as_text
from finally_indexer.schemas.messages import Event, EventType
from finally_indexer.schemas.status import MinuteBucket

log = structlog.get_logger(__name__)

#: Minutes of history shown on the dashboard and in /status.
WINDOW_MINUTES = 15
#: Entries read per XRANGE call, and calls per refresh: at ~200 events/s a refresh every few
#: seconds needs one call; the cap bounds the first read of a long backlog.
PAGE = 5_000
MAX_PAGES = 20


class ThroughputTracker:
    """Per-minute sums of ``batch_indexed`` events over the last :data:`WINDOW_MINUTES`."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._last_id: str | None = None
        # Two concurrent refreshes (two dashboards, /status and /metrics) would read the same new
        # events from the same start and count them twice: one refresh at a time.
        self._lock = asyncio.Lock()
        self._buckets: dict[int, dict[str, int]] = defaultdict(
            lambda: {"batches": 0, "listings": 0, "failed": 0}
        )

    async def refresh(self, redis: Redis) -> list[MinuteBucket]:
        """Read new events, drop buckets older than the window, return every minute of the window."""
        async with self._lock:
            return await self._refresh(redis)

    async def _refresh(self, redis: Redis) -> list[MinuteBucket]:
        now_ms = int(time.time() * 1000)
        window_start = (now_ms // 60_000 - WINDOW_MINUTES + 1) * 60_000
        start = f"({self._last_id}" if self._last_id else str(window_start)
        for _ in range(MAX_PAGES):
            entries = await redis.xrange(self.stream, min=start, max="+", count=PAGE) or []
            for entry_id, fields in entries:
                self._add(as_text(entry_id), fields or {})
            if entries:
                self._last_id = as_text(entries[-1][0])
                start = f"({self._last_id}"
            if len(entries) < PAGE:
                break
        for minute in [m for m in self._buckets if m < window_start]:
            del self._buckets[minute]
        return [self._bucket(window_start + i * 60_000) for i in range(WINDOW_MINUTES)]

    def _bucket(self, minute_ms: int) -> MinuteBucket:
        b = self._buckets.get(minute_ms, {"batches": 0, "listings": 0, "failed": 0})
        return MinuteBucket(minute_ms, b["batches"], b["listings"], b["failed"])

    def _add(self, entry_id: str, fields: dict[Any, Any]) -> None:
        try:
            event = Event.from_fields(fields)
        except (KeyError, ValueError, ValidationError):
            log.warning("event_unreadable", stream=self.stream, entry_id=entry_id)
            return
        if event.type is not EventType.BATCH_INDEXED:
            return
        bucket = self._buckets[int(entry_id.split("-", maxsplit=1)[0]) // 60_000 * 60_000]
        bucket["batches"] += 1
        bucket["failed"] += event.counts.get("failed", 0)
        bucket["listings"] += sum(n for k, n in event.counts.items() if k != "failed")
