"""The live console's view (a pure function of job rows and queue figures) and when it is shown;
logs are JSON lines whenever stderr is not a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from finally_indexer.core.console import (
    JobLine,
    QueueLine,
    console_enabled,
    human_duration,
    job_line,
    render,
    render_text,
)
from finally_indexer.core.logging import resolve_format

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
QUEUES = QueueLine(
    jobs_lag=0, batches_lag=120, batches_pending=16, dead_letters=0, failures_open=3, legacy_list=1
)


def row(**changes: Any) -> dict[str, Any]:
    """A ``reports.current_jobs`` row: 3,000 listings, 1,000 handled in the 50 s since planning."""
    base: dict[str, Any] = {
        "job_id": "api-1", "status": "running", "total": 3000, "done": 900, "skipped": 80, "deleted": 0,
        "failed": 20, "created_at": NOW - timedelta(seconds=60), "planned_at": NOW - timedelta(seconds=50),
        "finished_at": None, "embedding_tokens": 285_000, "cost_usd": 0.0371,
    }  # fmt: skip
    return base | changes


def test_job_line_paces_since_planning_and_projects_the_rest() -> None:
    line = job_line(row(), NOW)
    assert (line.handled, line.total, line.failed) == (1000, 3000, 20)
    assert line.per_second == pytest.approx(20.0)
    assert line.eta_s == pytest.approx(100.0)  # 2,000 left at 20/s
    assert line.tokens == 285_000
    assert line.usd == pytest.approx(0.0371)


@pytest.mark.parametrize(
    ("changes", "per_second", "eta_s"),
    [
        ({"done": 0, "skipped": 0, "failed": 0}, None, None),  # nothing handled yet: no pace, no ETA
        ({"planned_at": None, "total": 0, "done": 0, "skipped": 0, "failed": 0}, None, None),  # not planned
        ({"status": "completed", "finished_at": NOW - timedelta(seconds=10)}, 25.0, 0.0),  # pace until done
    ],
)
def test_job_line_edges(changes: dict[str, Any], per_second: float | None, eta_s: float | None) -> None:
    line = job_line(row(**changes), NOW)
    assert line.per_second == (pytest.approx(per_second) if per_second else None)
    assert line.eta_s == eta_s


def test_render_shows_each_job_then_queues_and_failures() -> None:
    jobs = [job_line(row(), NOW), job_line(row(job_id="legacy-7", status="completed", total=10, done=10,
                                                 skipped=0, failed=0, finished_at=NOW, cost_usd=1.5), NOW)]  # fmt: skip
    text = render_text(render(jobs, QUEUES), width=140)
    lines = text.splitlines()
    assert lines[0].split() == [
        "job",
        "status",
        "progress",
        "done",
        "/",
        "total",
        "listings/s",
        "ETA",
        "tokens",
        "USD",
    ]
    running = next(x for x in lines if x.startswith("api-1"))
    for part in ("running (20 failed)", "1,000 / 3,000", "20.0", "1 min 40 s", "285,000", "$0.0371"):
        assert part in running
    done = next(x for x in lines if x.startswith("legacy-7"))
    assert "completed" in done
    assert "10 / 10" in done
    assert "$1.50" in done
    assert "jobs lag 0 · batches lag 120 · in flight 16 · legacy list 1" in text
    assert "failures open 3 · dead letters 0" in text


def test_render_without_jobs_or_figures() -> None:
    assert "no jobs in the last minutes" in render_text(render([], QUEUES))
    text = render_text(render([], None, problem="ConnectionRefusedError"))
    assert "status unavailable: ConnectionRefusedError" in text


def test_render_lists_at_most_the_newest_jobs() -> None:
    jobs = [JobLine(f"job-{i}", "running", i, 100, 0, 1.0, 1.0, 0, 0.0) for i in range(20)]
    text = render_text(render(jobs, QUEUES))
    assert "job-7 " in text
    assert "job-8 " not in text


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (0, "0 s"), (59.6, "1 min 00 s"), (125, "2 min 05 s"), (3725, "1 h 02 min")],
)
def test_human_duration(seconds: float | None, shown: str) -> None:
    assert human_duration(seconds) == shown


@pytest.mark.parametrize(
    ("console", "log_format", "terminal", "shown"),
    [
        ("auto", "auto", True, True),
        ("auto", "console", True, True),
        ("auto", "json", True, False),  # LOG_FORMAT=json: a machine reads this terminal
        ("auto", "auto", False, False),  # not a terminal: JSON lines only
        ("auto", "console", False, False),
        ("on", "json", False, True),
        ("off", "auto", True, False),
    ],
)
def test_console_is_shown_only_to_a_person_at_a_terminal(
    console: Any, log_format: Any, terminal: bool, shown: bool
) -> None:
    assert console_enabled(console, log_format, terminal=terminal) is shown


@pytest.mark.parametrize(
    ("fmt", "terminal", "resolved"),
    [
        ("auto", True, "console"),
        ("auto", False, "json"),
        ("json", True, "json"),
        ("console", False, "console"),
    ],
)
def test_log_format_auto_follows_the_terminal(fmt: Any, terminal: bool, resolved: str) -> None:
    assert resolve_format(fmt, terminal=terminal) == resolved


_LOG_ONE_LINE = (
    "from finally_indexer.core.logging import configure_logging; import structlog;"
    "configure_logging('INFO', 'auto'); structlog.get_logger('t').info('job_planned', job_id='api-1')"
)


def test_logs_are_json_lines_when_stderr_is_not_a_terminal() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LOG_ONE_LINE], capture_output=True, text=True, timeout=60, check=True
    )
    [line] = done.stderr.splitlines()
    record = json.loads(line)
    assert (record["event"], record["job_id"], record["level"]) == ("job_planned", "api-1", "info")


def test_logs_are_for_people_on_a_terminal() -> None:
    parent, child = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LOG_ONE_LINE],
            stderr=child,
            stdout=subprocess.DEVNULL,
            timeout=60,
            check=True,
        )
        assert done.returncode == 0
        os.close(child)
        child = -1
        output = b""
        while True:
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            output += chunk
    finally:
        if child >= 0:
            os.close(child)
        os.close(parent)
    text = output.decode()
    assert "job_planned" in text
    assert "api-1" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.strip())


def test_the_addresses_stay_on_top_of_the_console() -> None:
    banner = "finally-indexer is up\n  dashboard    http://127.0.0.1:8000/dashboard"
    lines = render_text(render([job_line(row(), NOW)], QUEUES, header=banner)).splitlines()
    assert lines[:2] == banner.splitlines()
    assert lines[2].startswith("job ")
