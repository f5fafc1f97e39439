"""Security headers: strict ones for the dashboard and its static files, two for every answer.

The dashboard page has no inline script or style (``/static/dashboard.js`` and ``.css`` only) and
talks to its own origin, so its policy allows exactly that; it may not be framed (clickjacking
of the retry button) and sends no referrer. The Swagger page (``/schema/swagger``) loads its own
scripts from a CDN and is left out of the strict policy.
"""

from __future__ import annotations

from typing import Any, Final

from litestar import Response

__all__ = ["DASHBOARD_HEADERS", "EVERY_RESPONSE", "add_dashboard_headers"]

CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

#: On every answer of the API.
EVERY_RESPONSE: Final = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

#: On the dashboard page and its static files.
DASHBOARD_HEADERS: Final = {
    **EVERY_RESPONSE,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
}


async def add_dashboard_headers(response: Response[Any]) -> Response[Any]:
    """``after_request`` hook of the dashboard routes."""
    for name, value in DASHBOARD_HEADERS.items():
        response.headers[name] = value
    return response
