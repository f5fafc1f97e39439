"""A worker restarted after a SIGKILL that meets a stall while its subscribers start keeps running.

Seen with ``python bench/faults.py`` on a loaded machine: the sigkill row converged but the worker
once exited with code 1 by itself. FastStream gives each subscriber a fixed 3 s for its first
PING (``anyio.fail_after(3.0)``); a process or server stalled longer at that moment made
``broker.start()`` raise ``TimeoutError``, uncaught, and the worker exit 1 at start-up (a SIGSTOP
of 4 s at that moment reproduced it: ``Traceback ... faststream/redis/subscriber/usecases/basic.py,
line 87, in start ... TimeoutError``). Here the restart talks to Redis through
:class:`~faultlab.slow_redis.SlowPings`, which holds the first PING 4 s: the run must converge with
no exit nobody asked for.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faultlab.lab import TEST_SCALE, Lab, run_fault
from faultlab.slow_redis import SlowPings
from pydantic import SecretStr

#: Longer than FastStream's fixed 3 s wait for a subscriber's first PING.
STALL_S = 4.0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_restart_whose_subscribers_start_slowly_serves_without_exiting(server_dir: Path) -> None:
    proxies: list[SlowPings] = []

    async def killed_then_stalled(lab: Lab) -> None:
        proxy = SlowPings(lab.settings.redis_dsn(), delay_s=STALL_S, count=1)
        await proxy.start()
        proxies.append(proxy)
        lab.worker.settings = lab.settings.model_copy(update={"redis_url": SecretStr(proxy.url)})
        await lab.worker.kill()  # started again at once, through the proxy
        lab.note = "1 kill, first PING held 4 s"

    try:
        outcome = await run_fault(
            "sigkill-slow-start", killed_then_stalled, TEST_SCALE, server_dir, embedder="openai",
            latency=TEST_SCALE.pace_s,
        )  # fmt: skip
    finally:
        for proxy in proxies:
            await proxy.aclose()

    assert proxies[0].delayed == 1  # the stall happened: the restarted worker's first PING was held
    assert outcome.problems == [], f"{outcome}\n--- worker log ---\n{outcome.log_tail}"
    assert outcome.exits == []
    assert "broker_start_timed_out" in outcome.log_tail  # FastStream's wait did time out, and was retried
