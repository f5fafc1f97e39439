"""The events stream: every outcome (job accepted, planned, batch indexed, failures) as one entry.

``/status``, the dashboard and downstream caches read it; it is a bounded log
(``XADD MAXLEN ~ EVENTS_MAXLEN``), so appending never needs a separate trim.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from finally_indexer.core.constants import EVENTS_MAXLEN
from finally_indexer.core.streams import as_text
from finally_indexer.schemas.messages import Event

__all__ = ["EventLog"]

log = structlog.get_logger(__name__)


class EventLog:
    """Appends :class:`~finally_indexer.schemas.messages.Event` entries to the events stream."""

    def __init__(self, redis: Any, stream: str, *, maxlen: int = EVENTS_MAXLEN) -> None:
        self._redis = redis
        self._stream = stream
        self._maxlen = maxlen

    @property
    def stream(self) -> str:
        """The events stream's key."""
        return self._stream

    async def append(self, event: Event) -> str:
        """Append one event; return its entry id."""
        entry_id = await self._redis.xadd(
            self._stream, event.to_fields(), maxlen=self._maxlen, approximate=True
        )
        return as_text(entry_id)

    async def extend(self, events: Iterable[Event]) -> None:
        """Append several events in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            pipe.xadd(self._stream, event.to_fields(), maxlen=self._maxlen, approximate=True)
        await pipe.execute()
