"""An httpx client talking to the ASGI app in the test's own event loop (every test that calls the API).

Litestar's ``AsyncTestClient`` runs the app in a portal thread with its own loop, where the
test's (loop-bound) asyncpg pool and Redis client cannot be used; ``ASGITransport`` runs it here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
from litestar import Litestar

#: httpx's own default caller address: a loopback client, as the app's own host sees it.
LOOPBACK = ("127.0.0.1", 123)


@asynccontextmanager
async def serve_in_loop(
    app: Litestar, *, client: tuple[str, int] = LOOPBACK
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app``; ``client``: the (host, port) the app sees as the caller's address."""
    transport = httpx.ASGITransport(app=cast("Any", app), client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
