"""Structured error answers: ``{status_code, error, detail, extra}``, never a stack trace."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap
from redis.exceptions import RedisError

from finally_indexer.core.errors import DependencyUnavailable, clip

log = structlog.get_logger(__name__)

#: Short machine-readable codes for the HTTP statuses the API answers with.
_CODES = {
    400: "validation_error",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    429: "too_many_requests",
}


def _body(
    status: int, error: str, detail: str, extra: Any = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    content: dict[str, Any] = {"status_code": status, "error": error, "detail": detail}
    if extra:
        content["extra"] = extra
    return Response(content, status_code=status, media_type=MediaType.JSON, headers=headers)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    extra = exc.extra if isinstance(exc, ValidationException) or exc.extra else None
    # Retry-After of a 429, WWW-Authenticate of a 401: part of the answer
    headers = dict(exc.headers) if exc.headers else None
    return _body(exc.status_code, _CODES.get(exc.status_code, "http_error"), exc.detail, extra, headers)


def dependency_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.warning("dependency_unavailable", path=request.url.path, error=repr(exc))
    return _body(
        HTTP_503_SERVICE_UNAVAILABLE,
        "dependency_unavailable",
        f"a dependency is unavailable: {type(exc).__name__}",
    )


#: What the client is told per kind of refused value: PostgreSQL's own message names types,
#: functions, encodings and bytes of the query — internals, and sometimes the input echoed back
#: unbounded — so it goes to the log only.
_REFUSED: tuple[tuple[type[asyncpg.DataError], str], ...] = (
    (
        asyncpg.CharacterNotInRepertoireError,
        "a text value holds a character that cannot be stored (such as NUL)",
    ),
    (asyncpg.UntranslatableCharacterError, "a text value holds a character that cannot be stored"),
    (asyncpg.NumericValueOutOfRangeError, "a number is out of range"),
    (asyncpg.DatetimeFieldOverflowError, "a date or time is out of range"),
    (asyncpg.StringDataRightTruncationError, "a text value is too long"),
    (asyncpg.InvalidTextRepresentationError, "a value is not in the expected format"),
    (asyncpg.InvalidDatetimeFormatError, "a date or time is not in the expected format"),
)
_REFUSED_OTHER = "a value of the request is not acceptable"


def invalid_input(request: Request[Any, Any, Any], exc: asyncpg.DataError) -> Response[dict[str, Any]]:
    """PostgreSQL refused a value the request carried (a NUL byte in text, a number out of range).

    Route validation lets such values through; the database is the last to see them, and the
    fault is still the input's, so the answer is a 400, not a 500 — with a fixed sentence per
    kind of value (:data:`_REFUSED`), never PostgreSQL's message.
    """
    log.info("invalid_input", path=request.url.path, method=request.method, error=clip(repr(exc), 500))
    detail = next((text for kind, text in _REFUSED if isinstance(exc, kind)), _REFUSED_OTHER)
    return _body(HTTP_400_BAD_REQUEST, "invalid_input", detail)


def unprocessable_input(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """A body or parameter the server cannot even take apart: JSON nested past the decoder's
    depth (``RecursionError``), a number or time out of any representable range (``OverflowError``).

    Only input reaches these depths and ranges in a request, so the answer is a 400.
    """
    log.info("invalid_input", path=request.url.path, method=request.method, error=type(exc).__name__)
    what = "nested too deeply" if isinstance(exc, RecursionError) else "out of range"
    return _body(HTTP_400_BAD_REQUEST, "invalid_input", f"a value of the request is {what}")


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error("request_failed", path=request.url.path, method=request.method, exc_info=exc)
    return _body(
        HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal error; the server log has the details"
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: http_error,
    DependencyUnavailable: dependency_error,
    RedisError: dependency_error,
    asyncpg.PostgresConnectionError: dependency_error,
    asyncpg.InterfaceError: dependency_error,
    ConnectionError: dependency_error,
    TimeoutError: dependency_error,
    asyncpg.DataError: invalid_input,
    RecursionError: unprocessable_input,
    OverflowError: unprocessable_input,
    Exception: internal_error,
}
