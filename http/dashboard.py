"""``GET /dashboard`` (one Jinja page), ``GET /`` (redirects to it) and the static files under ``/static``.

The page's script (``/static/dashboard.js``) polls ``/status`` and renders what it reads.
"""

from __future__ import annotations

from pathlib import Path

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from finally_indexer.core.settings import Settings
from finally_indexer.http.auth import require_read_key
from finally_indexer.http.headers import add_dashboard_headers

HERE = Path(__file__).parent
#: How often the page polls /status.
REFRESH_MS = 2_000


@get("/dashboard", include_in_schema=False, guards=[require_read_key], after_request=add_dashboard_headers)
async def dashboard(settings: NamedDependency[Settings]) -> Template:
    return Template(
        template_name="dashboard.html",
        context={"api_key_required": settings.api_key is not None, "refresh_ms": REFRESH_MS},
    )


@get("/", include_in_schema=False)
async def root() -> Redirect:
    return Redirect(path="/dashboard")


# the page's code and style are public (no guard): the data it shows comes from guarded /status
STATIC = create_static_files_router(
    path="/static", directories=[HERE / "static"], after_request=add_dashboard_headers
)

ROUTES: list[ControllerRouterHandler] = [dashboard, root, STATIC]
