"""The basic types of the stream side: an entry as Redis returns it, and the (stream, group) pairs.

Every module that reads a work stream names it through :func:`work_groups` (or one of the two
functions behind it), so the pairing of a stream with the group that consumes it is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from finally_indexer.core.constants import INDEXER_GROUP, PLANNER_GROUP
from finally_indexer.core.settings import Settings

__all__ = ["StreamEntry", "StreamGroup", "as_text", "batch_group", "jobs_group", "work_groups"]


def as_text(value: object) -> str:
    """A Redis reply value (bytes from a client without ``decode_responses``) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One stream entry as Redis returned it: where it is, its id and its raw fields."""

    stream: str
    entry_id: str
    fields: dict[bytes, bytes]


@dataclass(frozen=True, slots=True)
class StreamGroup:
    """A work stream and the consumer group that consumes it; ``role`` names it in reports."""

    stream: str
    group: str
    role: str


def jobs_group(settings: Settings) -> StreamGroup:
    """The jobs stream, consumed by the planners."""
    return StreamGroup(settings.jobs_stream, PLANNER_GROUP, "jobs")


def batch_group(settings: Settings) -> StreamGroup:
    """The batch stream, consumed by the indexers."""
    return StreamGroup(settings.batch_stream, INDEXER_GROUP, "batches")


def work_groups(settings: Settings) -> tuple[StreamGroup, StreamGroup]:
    """Both work streams with their groups, jobs first (the order work flows in)."""
    return jobs_group(settings), batch_group(settings)
