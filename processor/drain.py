"""Drain mode: the production consume path in a loop that returns once everything queued is done.

Tests and benchmarks use it instead of a worker's subscribers (like arq's ``burst``): each round
moves the legacy list onto the jobs stream, reads the entries never delivered, claims the ones
pending longer than ``RECLAIM_IDLE_MS``, and hands all of them to
:meth:`~.consume.Consumer.consume` — the function the FastStream handlers call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from finally_indexer.processor.bridge import Bridge
from finally_indexer.processor.consume import Consumer, Lane, claim_idle, read_new

__all__ = ["DrainReport", "drain"]

#: Entries read per XREADGROUP in drain mode (a few batches' worth per round trip).
DRAIN_READ: Final = 64
#: Seconds between rounds while drain mode waits for pending entries to become reclaimable.
DRAIN_POLL_S: Final = 0.05


@dataclass(slots=True)
class DrainReport:
    """What one drain did."""

    bridged: int = 0
    jobs: int = 0
    batches: int = 0
    reclaimed: int = 0


async def drain(
    bridge: Bridge, consumer: Consumer, lanes: Sequence[Lane], *, legacy_list: str, reclaim_idle_ms: int,
    timeout_s: float,
) -> DrainReport:  # fmt: skip
    """Process everything queued (list, streams, pending entries once reclaimable) and return.

    Returns when the legacy list is empty and no lane has anything undelivered or pending; entries
    that keep failing are dead-lettered after ``MAX_DELIVERIES``. Entries failing on a
    misconfiguration are never dead-lettered (they wait for the fix), so then this raises
    ``TimeoutError`` after ``timeout_s``, as it does for anything else that never settles.
    """
    report = DrainReport()
    deadline = time.monotonic() + timeout_s
    while True:
        report.bridged += await bridge.drain()
        handled = 0
        for lane in lanes:
            handled += await _new(consumer, lane, report)
        for lane in lanes:
            handled += await _reclaimed(consumer, lane, reclaim_idle_ms, report)
        if not handled and await _idle(consumer, lanes, legacy_list):
            return report
        if time.monotonic() > deadline:
            raise TimeoutError(f"pipeline not idle after {timeout_s}s: {report}")
        await asyncio.sleep(DRAIN_POLL_S)


async def _new(consumer: Consumer, lane: Lane, report: DrainReport) -> int:
    total = 0
    while entries := await read_new(consumer.redis, lane.pair, consumer.name, count=DRAIN_READ):
        await consumer.consume(lane, entries)
        total += len(entries)
    if lane.pair.role == "jobs":
        report.jobs += total
    else:
        report.batches += total
    return total


async def _reclaimed(consumer: Consumer, lane: Lane, min_idle_ms: int, report: DrainReport) -> int:
    entries, deliveries = await claim_idle(consumer.redis, lane.pair, consumer.name, min_idle_ms=min_idle_ms)
    if entries:
        await consumer.consume(lane, entries, deliveries)
    report.reclaimed += len(entries)
    return len(entries)


async def _idle(consumer: Consumer, lanes: Sequence[Lane], legacy_list: str) -> bool:
    if await consumer.redis.llen(legacy_list):
        return False
    for lane in lanes:
        info = await consumer.redis.xpending(lane.pair.stream, lane.pair.group)
        if info["pending"]:
            return False
    return True
