"""The API-key guard of the mutating routes (``POST /sync``, ``POST /retry``)."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from finally_indexer.core.settings import Settings

API_KEY_HEADER = "X-API-Key"
#: Name of the OpenAPI security scheme.
SECURITY_SCHEME = "ApiKey"


def require_api_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Refuse with 401 unless ``X-API-Key`` equals ``API_KEY`` (no check when none is configured)."""
    settings: Settings = connection.app.state.settings
    if settings.api_key is None:
        return
    given = connection.headers.get(API_KEY_HEADER, "").encode()
    if not hmac.compare_digest(given, settings.api_key.get_secret_value().encode()):
        raise NotAuthorizedException(detail=f"missing or wrong {API_KEY_HEADER} header")
