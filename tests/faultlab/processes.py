"""The service's roles as real processes, supervised as compose would, with their peak memory.

:class:`RoleProcess` runs ``python -m finally_indexer.core.cli <role>`` with the settings in its
environment (logs appended to ``<folder>/<role>.log``). A fault stops it on purpose (:meth:`kill`,
:meth:`terminate`) and starts it again; an exit nobody asked for is recorded in ``exits`` and the
process is started again after :data:`RESTART_DELAY_S`, as ``restart: unless-stopped`` would.
The peak resident memory of every process it ran is sampled from ``/proc/<pid>/status``
(``VmHWM``, the kernel's own high-water mark, so a sample only misses what grew in the last
:data:`RSS_SAMPLE_S` of a process killed outright).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Final

from finally_indexer.core.settings import Settings

__all__ = ["RoleProcess", "peak_rss_bytes"]

#: Seconds between two samples of a process's peak memory.
RSS_SAMPLE_S: Final = 0.1
#: Pause before an exited process is started again (compose restarts at once; a short pause keeps
#: a crash loop from spinning).
RESTART_DELAY_S: Final = 0.5
#: Seconds a graceful stop may take: the worker's grace for in-flight handlers (30 s) and more.
STOP_TIMEOUT_S: Final = 60.0
#: Seconds a process may take to start (imports, connections) before a stop goes ahead anyway.
READY_TIMEOUT_S: Final = 60.0
_PR_SET_PDEATHSIG: Final = 1


def peak_rss_bytes(pid: int) -> int:
    """The peak resident memory of ``pid`` so far (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _die_with_parent() -> None:
    """Runs in the child before exec: a test or bench that dies takes its roles with it."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class RoleProcess:
    """One role of the service as a supervised process (see the module's docstring)."""

    def __init__(
        self, role: str, settings: Settings, folder: Path, *,
        ready: Callable[[int], Awaitable[bool]] | None = None,
    ) -> None:  # fmt: skip
        self.role = role
        self.settings = settings
        self._ready = ready
        self._log = folder / f"{role}.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._meant = False  # the current process is being stopped on purpose
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: Exit codes of exits nobody asked for, and of graceful stops that did not exit 0.
        self.exits: list[int] = []
        self.peak_rss = 0

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        env = {"PATH": os.environ.get("PATH", "")} | self.settings.as_environment()
        with self._log.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "finally_indexer.core.cli", self.role, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        self._meant = False
        self._spawn(self._watch(self._proc))

    async def kill(self) -> None:
        """SIGKILL, then start again at once."""
        await self._signal(signal.SIGKILL)
        await self.start()

    async def wait_ready(self) -> None:
        """Until the process is serving (its ``ready`` probe says so), at most :data:`READY_TIMEOUT_S`.

        A SIGTERM before its signal handlers are installed ends a process with -15 instead of
        exit 0; a graceful stop is only meaningful for a process that started.
        """
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self._ready is not None and self._proc is not None and time.monotonic() < deadline:
            if self._proc.returncode is not None or await self._ready(self._proc.pid):
                return
            await asyncio.sleep(0.05)

    async def terminate(self) -> int:
        """SIGTERM (a graceful stop), then start again; the exit code (anything but 0 is recorded)."""
        await self.wait_ready()
        code = await self._signal(signal.SIGTERM)
        if code != 0:
            self.exits.append(code)
        await self.start()
        return code

    async def stop(self) -> None:
        """Stop for good (SIGTERM, SIGKILL after :data:`STOP_TIMEOUT_S`); a non-zero exit is recorded."""
        await self.wait_ready()
        self._closed = True
        code = await self._signal(signal.SIGTERM)
        if code != 0:
            self.exits.append(code)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _signal(self, sig: signal.Signals) -> int:
        proc = self._proc
        assert proc is not None
        self._meant = True
        if proc.returncode is None:
            self._sample(proc.pid)
            proc.send_signal(sig)
        try:
            return await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return -int(signal.SIGKILL)

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _sample(self, pid: int) -> None:
        self.peak_rss = max(self.peak_rss, peak_rss_bytes(pid))

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        """Sample its memory while it runs; restart it after an exit nobody asked for."""
        exited = asyncio.create_task(proc.wait())
        while not exited.done():
            self._sample(proc.pid)
            await asyncio.wait({exited}, timeout=RSS_SAMPLE_S)
        if not self._unattended(proc):
            return
        self.exits.append(exited.result())
        await asyncio.sleep(RESTART_DELAY_S)
        if self._unattended(proc):  # not stopped meanwhile
            await self.start()

    def _unattended(self, proc: asyncio.subprocess.Process) -> bool:
        """``proc`` is still the current process, and nobody is stopping it."""
        return proc is self._proc and not self._meant and not self._closed
