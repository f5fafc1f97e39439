"""The live console of ``up`` and ``worker``: each job in progress, the queues and the failures.

Redrawn every second under the addresses printed at start (rich's ``Live``), from the same
queries ``/status`` uses: per job done/total, listings per second, the time left, tokens and US
dollars; the work streams' lag and pending entries, dead letters and open failures. Log lines
still appear, above it. It is for people at a terminal only (:func:`console_enabled`): anywhere
else the process writes JSON log lines and nothing else.

The view is a pure function of the job rows and queue figures (:func:`job_line`,
:func:`render`), so what it shows is tested without a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import asyncpg
import structlog
from redis.asyncio import Redis
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from finally_indexer.core.logging import LogFormat, resolve_format
from finally_indexer.core.redis_client import open_redis
from finally_indexer.core.settings import Settings
from finally_indexer.db import failures, reports
from finally_indexer.db.pool import create_pool
from finally_indexer.http.deps import PgPool
from finally_indexer.http.status import StatusProjector

__all__ = [
    "JobLine",
    "QueueLine",
    "console_enabled",
    "human_duration",
    "job_line",
    "render",
    "render_text",
    "run_console",
]

log = structlog.get_logger(__name__)

#: Seconds between two refreshes of the figures (each is a handful of small queries).
REFRESH_S: Final = 1.0
#: Jobs shown at once (the newest); the dashboard lists more.
MAX_JOBS: Final = 8


@dataclass(frozen=True, slots=True)
class JobLine:
    """One job as the console shows it."""

    job_id: str
    status: str
    handled: int  # listings done: embedded, skipped, deleted or failed
    total: int
    failed: int
    per_second: float | None  # listings handled per second since the job was planned
    eta_s: float | None  # seconds left at that pace (None: unknown)
    tokens: int
    usd: float


@dataclass(frozen=True, slots=True)
class QueueLine:
    """The queues and failures under the jobs."""

    jobs_lag: int
    batches_lag: int
    batches_pending: int
    dead_letters: int
    failures_open: int
    legacy_list: int


def console_enabled(console: Literal["auto", "on", "off"], log_format: LogFormat, *, terminal: bool) -> bool:
    """Whether to show the console: ``auto`` only on a terminal (stdout) whose logs are not JSON."""
    if console != "auto":
        return console == "on"
    return terminal and resolve_format(log_format, terminal=terminal) == "console"


def job_line(row: Mapping[str, Any] | asyncpg.Record, now: datetime) -> JobLine:
    """A ``reports.current_jobs`` row as a console line, its pace averaged since it was planned."""
    handled = row["done"] + row["skipped"] + row["deleted"] + row["failed"]
    total = row["total"]
    started = row["planned_at"] or row["created_at"]
    elapsed = ((row["finished_at"] or now) - started).total_seconds()
    per_second = handled / elapsed if handled and elapsed > 0 else None
    if row["status"] in ("completed", "failed"):
        eta: float | None = 0.0
    elif per_second and total:
        eta = max(0, total - handled) / per_second
    else:
        eta = None
    return JobLine(
        row["job_id"], row["status"], handled, total, row["failed"], per_second, eta,
        row["embedding_tokens"], float(row["cost_usd"]),
    )  # fmt: skip


def human_duration(seconds: float | None) -> str:
    """``1 h 02 min``, ``4 min 05 s``, ``12 s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _usd(value: float) -> str:
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def render(
    jobs: Sequence[JobLine],
    queues: QueueLine | None,
    *,
    header: str | None = None,
    problem: str | None = None,
) -> RenderableType:
    """The console: ``header`` (the addresses ``up`` prints), a table of jobs (newest first), then
    one line of queues and failures."""
    table = Table(box=None, pad_edge=False, expand=False, show_edge=False, header_style="bold")
    for name, justify in (
        ("job", "left"), ("status", "left"), ("progress", "left"), ("done / total", "right"),
        ("listings/s", "right"), ("ETA", "right"), ("tokens", "right"), ("USD", "right"),
    ):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for job in jobs[:MAX_JOBS]:
        table.add_row(
            job.job_id, _status(job), ProgressBar(total=max(job.total, 1), completed=job.handled, width=24),
            f"{job.handled:,} / {job.total:,}", f"{job.per_second:,.1f}" if job.per_second else "-",
            human_duration(job.eta_s), f"{job.tokens:,}", _usd(job.usd),
        )  # fmt: skip
    parts: list[RenderableType] = [] if header is None else [Text(header)]
    parts.append(table if jobs else Text("no jobs in the last minutes", style="dim"))
    if queues is not None:
        parts.append(_queue_text(queues))
    if problem is not None:
        parts.append(Text(f"status unavailable: {problem}", style="yellow"))
    return Group(*parts)


def _status(job: JobLine) -> Text:
    style = {"running": "cyan", "completed": "green", "failed": "red"}.get(job.status, "")
    failed = f" ({job.failed:,} failed)" if job.failed else ""
    return Text(job.status + failed, style=style)


def _queue_text(q: QueueLine) -> Text:
    text = Text(
        f"queues  jobs lag {q.jobs_lag:,} · batches lag {q.batches_lag:,} · in flight {q.batches_pending:,}"
        f" · legacy list {q.legacy_list:,}  |  ",
        style="dim",
    )
    trouble = q.dead_letters or q.failures_open
    text.append(
        f"failures open {q.failures_open:,} · dead letters {q.dead_letters:,}",
        style="red" if trouble else "dim",
    )
    return text


def render_text(renderable: RenderableType, *, width: int = 120) -> str:
    """What ``renderable`` looks like on a terminal ``width`` columns wide, as plain text."""
    console = Console(width=width, record=True, color_system=None, force_terminal=False, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# --- the live loop ---------------------------------------------------------------------------------
async def run_console(settings: Settings, *, stop: asyncio.Event, header: str | None = None) -> None:
    """Redraw the console every second until ``stop``, ``header`` on top (log lines scroll above
    it, so it never scrolls away); its own small pool and Redis client."""
    pool = await create_pool(settings.model_copy(update={"db_pool_min": 1, "db_pool_max": 2}))
    projector = StatusProjector(settings)
    redis = open_redis(settings)
    stderr = sys.stderr  # Live replaces it while it runs
    try:
        with (
            Live(render([], None, header=header), console=Console(), refresh_per_second=4) as live,
            _logs_through_live(stderr),
        ):
            while not stop.is_set():
                live.update(await _snapshot(pool, redis, projector, header))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REFRESH_S)
    finally:
        await redis.aclose()
        await pool.close()


async def _snapshot(
    pool: PgPool, redis: Redis, projector: StatusProjector, header: str | None
) -> RenderableType:
    """The console now; a dependency that does not answer is shown, never fatal."""
    try:
        rows, queues, counts = await asyncio.gather(
            reports.current_jobs(pool, MAX_JOBS), projector.queues(redis), failures.failure_counts(pool)
        )
    except Exception as exc:  # the console only watches: the roles handle outages themselves
        log.debug("console_refresh_failed", error=repr(exc))
        return render([], None, header=header, problem=type(exc).__name__)
    now = datetime.now(UTC)
    by_role = {s.role: s for s in queues.streams}
    line = QueueLine(
        jobs_lag=by_role["jobs"].group.lag, batches_lag=by_role["batches"].group.lag,
        batches_pending=by_role["batches"].group.pending, dead_letters=queues.dead_letter_length,
        failures_open=counts.open, legacy_list=queues.legacy_list_length,
    )  # fmt: skip
    return render([job_line(r, now) for r in rows], line, header=header)


@contextlib.contextmanager
def _logs_through_live(stderr: Any) -> Iterator[None]:
    """Point the log handlers writing to ``stderr`` at ``sys.stderr`` as ``Live`` redirected it,
    so log lines print above the console instead of through it; put them back afterwards."""
    moved: list[tuple[logging.StreamHandler[Any], Any]] = [
        (handler, handler.setStream(sys.stderr))
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is stderr
    ]
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)
