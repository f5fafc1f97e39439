"""The adaptive concurrency limiter: the AIMD rule (pure), and slots handed out within the limit."""

from __future__ import annotations

import asyncio

import pytest

from finally_indexer.processor.embedders.limiter import AdaptiveLimiter, Outcome, Slot

OK, OVERLOAD, OTHER = Outcome.OK, Outcome.OVERLOAD, Outcome.OTHER
HELD = Slot(True, held=True, outcome=OK)  # answered, but the budget made it wait


@pytest.mark.parametrize(
    ("start", "slots", "expected"),
    [
        pytest.param(1, [Slot(True, outcome=OK)] * 3, [2, 4, 8], id="slow-start-doubles"),
        pytest.param(
            1,
            [HELD] + [Slot(True, outcome=OK)] * 3,
            [1, 2, 3, 4],
            id="after-the-budget-held-one-grows-by-one",
        ),
        pytest.param(7, [Slot(True, outcome=OK)] * 3, [8, 8, 8], id="never-above-the-maximum"),
        pytest.param(4, [Slot(False, outcome=OK)] * 2, [4, 4], id="a-slot-to-spare-no-growth"),
        pytest.param(4, [Slot(True, held=True, outcome=OK)] * 2, [4, 4], id="budget-bound-no-growth"),
        pytest.param(8, [Slot(True, outcome=OVERLOAD)] * 4, [4, 2, 1, 1], id="429-halves-down-to-one"),
        pytest.param(5, [Slot(False, outcome=OVERLOAD)], [2], id="overload-counts-even-unsaturated"),
        pytest.param(3, [Slot(True, outcome=OTHER)], [3], id="rejected-input-says-nothing"),
        pytest.param(
            2,
            [HELD]
            + [Slot(True, outcome=OK)] * 4
            + [Slot(True, outcome=OVERLOAD)]
            + [Slot(True, outcome=OK)] * 2,
            [2, 3, 4, 5, 6, 3, 4, 5],
            id="aimd-sawtooth",
        ),
        pytest.param(
            1,
            [Slot(True, outcome=OK)] * 2 + [Slot(True, outcome=OVERLOAD)] + [Slot(True, outcome=OK)] * 2,
            [2, 4, 2, 3, 4],
            id="an-overload-ends-slow-start",
        ),
    ],
)
def test_aimd_rule(start: int, slots: list[Slot], expected: list[int]) -> None:
    limiter = AdaptiveLimiter(maximum=8, initial=start)
    assert [limiter.record(slot) for slot in slots] == expected


async def test_slots_are_handed_out_within_the_limit() -> None:
    limiter = AdaptiveLimiter(maximum=4, initial=2)
    first = await limiter.acquire(saturated=False)
    second = await limiter.acquire(saturated=False)
    assert limiter.busy
    third = asyncio.create_task(limiter.acquire(saturated=True))
    await asyncio.sleep(0)
    assert not third.done()  # waits: both slots are taken
    first.outcome = OK
    await limiter.release(first)
    slot = await third
    assert slot.saturated
    assert limiter.in_flight == 2
    slot.outcome = OK
    await limiter.release(slot)  # saturated and answered: more slots (doubled: slow start)
    assert limiter.limit == 4
    second.outcome = OVERLOAD
    await limiter.release(second)
    assert (limiter.limit, limiter.in_flight) == (2, 0)  # halved
