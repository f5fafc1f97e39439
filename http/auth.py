"""The guards: the API key of the mutating routes, the read key of the read-only ones, and the
limit on failed attempts.

A key is presented as ``X-API-Key: <key>``, ``Authorization: Bearer <key>`` or HTTP Basic with
the key as the password (what a browser sends after its login prompt, also on the dashboard's
own requests). A client that presents a wrong key ``AUTH_FAILURES_PER_MINUTE`` times in a minute
gets 429 with ``Retry-After`` until the minute is over, whatever it presents.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import math

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, TooManyRequestsException
from litestar.handlers.base import BaseRouteHandler
from pydantic import SecretStr

from finally_indexer.core.settings import Settings
from finally_indexer.http.ratelimit import FailureLimiter

API_KEY_HEADER = "X-API-Key"
#: Name of the OpenAPI security scheme.
SECURITY_SCHEME = "ApiKey"
#: Sent with a 401 of a read route: a browser then asks for the key (any user name).
READ_CHALLENGE = 'Basic realm="finally-indexer", charset="UTF-8"'


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _client(connection: ASGIConnection) -> str:  # type: ignore[type-arg]
    return connection.client.host if connection.client else "unknown"


def presented_key(connection: ASGIConnection) -> bytes | None:  # type: ignore[type-arg]
    """The key the request carries (header, bearer token or Basic password), if any."""
    if (key := connection.headers.get(API_KEY_HEADER)) is not None:
        return key.encode()
    scheme, _, value = connection.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip().encode()
    if scheme.lower() == "basic" and value:
        try:
            return base64.b64decode(value.strip(), validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            return b""
    return None


def _matches(given: bytes, *keys: SecretStr | None) -> bool:
    # every key compared, in constant time each: which one matched (or how many) is not timed
    results = [hmac.compare_digest(given, k.get_secret_value().encode()) for k in keys if k is not None]
    return any(results)


def _limiter(connection: ASGIConnection) -> FailureLimiter:  # type: ignore[type-arg]
    limiter: FailureLimiter = connection.app.state.auth_failures
    return limiter


def _check(connection: ASGIConnection, *keys: SecretStr | None, challenge: str | None) -> None:  # type: ignore[type-arg]
    """Let the request through if it presents one of ``keys``; 401 (counted) or 429 otherwise."""
    limiter, client = _limiter(connection), _client(connection)
    if (wait := limiter.retry_after(client)) is not None:
        raise TooManyRequestsException(
            detail="too many failed authentications: try again later",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    given = presented_key(connection)
    if given is not None and _matches(given, *keys):
        return
    if given is not None:  # a wrong key is a guess; no key at all is not (a browser before its prompt)
        limiter.failed(client)
    raise NotAuthorizedException(
        detail=f"missing or wrong {API_KEY_HEADER} header",
        headers={"WWW-Authenticate": challenge} if challenge else None,
    )


def require_api_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Refuse with 401 unless the request presents ``API_KEY``.

    With no ``API_KEY`` configured (the embedded default), only loopback clients may mutate: a
    deployment that forgot the key is not left open to its network.
    """
    settings: Settings = connection.app.state.settings
    if settings.api_key is None:
        if not _is_loopback(_client(connection)):
            raise NotAuthorizedException(
                detail="API_KEY is not configured: mutating routes accept only loopback clients"
            )
        return
    _check(connection, settings.api_key, challenge=None)


def require_read_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """With ``READ_API_KEY`` set, refuse with 401 unless the request presents it (or ``API_KEY``)."""
    settings: Settings = connection.app.state.settings
    if settings.read_api_key is None:
        return
    _check(connection, settings.read_api_key, settings.api_key, challenge=READ_CHALLENGE)
