"""Queries on ``failed_operations``: recording failures for operators and resolving them on success."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from finally_indexer.core.errors import redact
from finally_indexer.db.products import DB

__all__ = ["Failure", "record_failures", "resolve_succeeded"]


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed operation: a listing (``product_id``) or a whole malformed job (``payload``)."""

    operation_type: str  # sync | update | delete | job
    reason: str  # short machine-readable code (a MalformedReason, 'max_deliveries', …)
    error_class: str
    error_message: str
    product_id: int | None = None
    job_id: str | None = None
    payload: bytes | None = None  # the raw job bytes, exactly as received
    stream: str | None = None
    entry_id: str | None = None


_INSERT = """
INSERT INTO failed_operations
    (operation_type, product_id, job_id, reason, error_class, error_message, payload, stream, entry_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
_RESOLVE = """
UPDATE failed_operations SET resolved_at = now(), resolution = 'succeeded'
WHERE product_id = ANY($1::bigint[]) AND resolved_at IS NULL
"""


async def record_failures(db: DB, failures: Sequence[Failure]) -> None:
    """Append ``failures`` (history is kept: a listing failing twice has two rows).

    The error message is stored :func:`~finally_indexer.core.errors.redact`-ed: operators read it
    through ``/failures`` and the dashboard. The payload is kept byte for byte (it is replayed).
    """
    if not failures:
        return
    await db.executemany(
        _INSERT,
        [
            (
                f.operation_type,
                f.product_id,
                f.job_id,
                f.reason,
                f.error_class,
                redact(f.error_message),
                f.payload,
                f.stream,
                f.entry_id,
            )
            for f in failures
        ],
    )


async def resolve_succeeded(db: DB, product_ids: Sequence[int]) -> None:
    """Close the open failures of listings that have now been processed successfully."""
    if product_ids:
        await db.execute(_RESOLVE, list(product_ids))
