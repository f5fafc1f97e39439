"""Every fault of ``bench/faults.py`` against the real processes, at a small scale.

Each test starts its own Redis and PostgreSQL, runs ``finally-indexer bridge`` and
``finally-indexer worker`` as processes on an edge store on disk, syncs 400 listings, injects its
fault, and proves the promise: every job ended, no drift in any class, nothing pending, every bad
payload recorded exactly once, dead letters only for bad payloads and none appearing after
convergence, bounded memory, no exit of the worker nobody asked for (``faultlab.lab.Outcome``).
``RECLAIM_IDLE_MS=500`` and ``MAX_DELIVERIES=3`` make a 10-second PostgreSQL stop, or 5 seconds
of a full disk, an outage far longer than MAX_DELIVERIES reclaims.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faultlab.catalog import FAULTS, run
from faultlab.disk import can_mount
from faultlab.lab import TEST_SCALE

#: The embedding client's request timeout is 60 s: that fault runs in the bench only.
_IN_TESTS = [name for name, spec in FAULTS.items() if not spec.needs_minutes and name != "none"]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault", _IN_TESTS)
async def test_the_service_converges_after_the_fault(fault: str, server_dir: Path) -> None:
    if FAULTS[fault].store_disk and not can_mount():
        pytest.skip("filling a disk of its own needs a tmpfs mount (root)")

    outcome = await run(fault, TEST_SCALE, server_dir)

    assert outcome.problems == [], f"{outcome}\n--- worker log ---\n{outcome.log_tail}"
    assert outcome.converged
    if fault == "bad-payloads":
        assert outcome.bad_recorded == outcome.dead_letters == TEST_SCALE.bad_payloads
    else:
        assert outcome.bad_recorded == outcome.dead_letters == 0
