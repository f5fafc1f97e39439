"""The exception tree. Whether a failure is *transient* or *permanent* drives the failure path.

::

    IndexerError
    ├── ConfigurationError        bad settings; the process refuses to start
    ├── TransientError            retry: the same input may succeed later
    │   ├── DependencyUnavailable     PostgreSQL, Redis or Qdrant briefly down
    │   └── EmbeddingRateLimited      429 from the embedding API (carries ``retry_after``)
    └── PermanentError            dead-letter: retrying the same input fails the same way
        ├── MalformedJob              a legacy job that breaks the contract (carries ``reason``)
        └── EmbeddingInputRejected    the model refused one input (carries its ``index``)

Transient failures leave the stream entry pending so it is retried (redelivered after the
reclaim idle time); permanent ones fail only the item concerned and are recorded in
``failed_operations`` and the dead-letter stream.
"""

from __future__ import annotations


class IndexerError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigurationError(IndexerError):
    """A setting is missing or invalid; the message names the variable and the expected form."""


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
