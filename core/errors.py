"""The exception tree. Whether a failure is *transient* or *permanent* drives the failure path.

::

    IndexerError
    ├── ConfigurationError        bad settings; the process refuses to start
    ├── BrokerUnrecoverable       a worker could not rebuild its consumers; it exits non-zero
    ├── TransientError            retry: the same input may succeed later
    │   ├── DependencyUnavailable     PostgreSQL, Redis or Qdrant briefly down
    │   └── EmbeddingRateLimited      429 from the embedding API (carries ``retry_after``)
    └── PermanentError            dead-letter: retrying the same input fails the same way
        ├── MalformedJob              a legacy job that breaks the contract (carries ``reason``)
        └── EmbeddingInputRejected    the model refused one input (carries its ``index``)

Error text is stored and shown to operators only through :func:`redact` (and cut to size by
:func:`clip`); :func:`storable` makes any text acceptable to PostgreSQL.

Transient failures leave the stream entry pending so it is retried (redelivered after the
reclaim idle time); permanent ones fail only the item concerned and are recorded in
``failed_operations`` and the dead-letter stream.
"""

from __future__ import annotations

import re
from typing import Final


class IndexerError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigurationError(IndexerError):
    """A setting is missing or invalid; the message names the variable and the expected form."""


class BrokerUnrecoverable(IndexerError):
    """A worker's consumer groups or subscribers are gone and recreating them failed again and again."""


class TransientError(IndexerError):
    """A failure worth retrying: network, timeouts, 429/5xx, a dependency briefly down."""


class DependencyUnavailable(TransientError):
    """PostgreSQL, Redis or Qdrant could not be reached."""


class EmbeddingRateLimited(TransientError):
    """The embedding API answered 429; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(IndexerError):
    """A failure that retrying the same input cannot fix."""


class MalformedJob(PermanentError):
    """A legacy job that breaks the contract; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EmbeddingInputRejected(PermanentError):
    """The embedding model rejected one input (e.g. 400 invalid input); ``index`` says which."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


# --- redaction ---------------------------------------------------------------------------------
#: Secrets that provider and driver errors quote back: API keys (``sk-…``), bearer tokens,
#: ``key=value`` credentials and the password part of connection URLs. Error text passes through
#: :func:`redact` before it is stored or published (``failed_operations``, the dead-letter stream,
#: events), because ``/status``, ``/failures`` and the dashboard show it.
_MASK = "***"
_REDACTIONS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # scheme://user:password@host → scheme://user:***@host (also redis://:password@host)
    (re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)[^\s/@]+(?=@)"), rf"\g<head>{_MASK}"),
    (re.compile(r"(?i)\b(?P<head>bearer\s+)[^\s'\",;]+"), rf"\g<head>{_MASK}"),
    (
        re.compile(
            r"(?i)(?P<head>\b(?:api[_-]?key|apikey|access[_-]?token|secret|password|passwd|pwd)"
            r"[\"']?\s*[=:]\s*[\"']?)[^\s&'\",;}]+"
        ),
        rf"\g<head>{_MASK}",
    ),
    (re.compile(r"(?<![A-Za-z0-9])sk-[^\s'\",;)]*[^\s'\",;).]"), f"sk-{_MASK}"),
)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    note = f"… [{len(text) - limit} more characters]"
    return text[: max(limit - len(note), 0)] + note


def storable(text: str) -> str:
    """``text`` as PostgreSQL accepts it: NUL characters shown as ``\\0``, lone surrogates escaped.

    Used on error messages and ids that quote input, so that writing a failure can never fail.
    """
    return text.replace("\x00", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")


def redact(text: str) -> str:
    """``text`` with API keys, bearer tokens, credential values and URL passwords masked."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text
