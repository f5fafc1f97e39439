"""Logging setup, done once by the entrypoint: structlog for our code, stdlib logs routed through it.

Every module logs with ``log = structlog.get_logger(__name__)`` and key/value events. ``console``
renders coloured lines for people; ``json`` renders one JSON object per line for log shippers;
``auto`` (the default) is ``console`` on a terminal and ``json`` anywhere else (a pipe, a file, a
container's log driver), so what a machine reads is always JSON lines.
Library loggers (uvicorn, asyncpg, faststream, alembic …) go through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog
from structlog.typing import Processor

#: Libraries whose INFO lines are noise next to ours (per-request access lines, HTTP client calls).
#: Library loggers too chatty at INFO: per-request access lines, HTTP client internals, and
#: Alembic's plugin registration (eight lines at every start).
_QUIET = {
    "uvicorn.access": logging.WARNING,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "alembic.runtime.plugins": logging.WARNING,
}


LogFormat = Literal["auto", "console", "json"]


def resolve_format(fmt: LogFormat, *, terminal: bool) -> Literal["console", "json"]:
    """The renderer ``fmt`` means when stderr is (or is not) a terminal: ``auto`` follows it."""
    if fmt == "auto":
        return "console" if terminal else "json"
    return fmt


def configure_logging(level: str, fmt: LogFormat) -> None:
    """Route structlog and stdlib logging to stderr at ``level``, rendered as ``fmt``."""
    fmt = resolve_format(fmt, terminal=sys.stderr.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Processor
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        # plain tracebacks: rich's locals view would print secrets held in local variables
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # no caching: module-level loggers must follow a later reconfiguration (tests, capture_logs)
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, quiet_level in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet_level, root.level))
    logging.captureWarnings(True)
