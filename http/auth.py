"""The API-key guard of the mutating routes (``POST /sync``, ``POST /retry``)."""

from __future__ import annotations

import hmac
import ipaddress

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from finally_indexer.core.settings import Settings

API_KEY_HEADER = "X-API-Key"
#: Name of the OpenAPI security scheme.
SECURITY_SCHEME = "ApiKey"


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_api_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Refuse with 401 unless ``X-API-Key`` equals ``API_KEY``.

    With no ``API_KEY`` configured (the embedded default), only loopback clients may mutate: a
    deployment that forgot the key is not left open to its network.
    """
    settings: Settings = connection.app.state.settings
    if settings.api_key is None:
        if not _is_loopback(connection.client.host if connection.client else None):
            raise NotAuthorizedException(
                detail="API_KEY is not configured: mutating routes accept only loopback clients"
            )
        return
    given = connection.headers.get(API_KEY_HEADER, "").encode()
    if not hmac.compare_digest(given, settings.api_key.get_secret_value().encode()):
        raise NotAuthorizedException(detail=f"missing or wrong {API_KEY_HEADER} header")
