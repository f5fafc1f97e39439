"""A Redis that answers late: a TCP proxy in front of the real server that holds PINGs.

FastStream starts each subscriber by sending a PING and gives the answer a fixed 3 s
(``anyio.fail_after(3.0)`` in ``faststream/redis/subscriber/usecases/basic.py``); on a loaded
machine a worker just (re)started, or the server, can stall that long at that moment. The proxy
makes that moment reproducible: the first ``count`` PINGs reach Redis ``delay_s`` late (the
connection is held meanwhile, as a stalled server or process would hold it); every other byte
passes unchanged. Point a process at :attr:`SlowPings.url` instead of the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["SlowPings"]

#: A PING as redis-py sends it (RESP array of one bulk string).
PING: Final = b"*1\r\n$4\r\nPING\r\n"
_CHUNK: Final = 65536


class SlowPings:
    """The proxy (see the module); :attr:`delayed` counts the PINGs it held."""

    def __init__(self, upstream_url: str, *, delay_s: float, count: int) -> None:
        parts = urlsplit(upstream_url)
        assert parts.hostname is not None
        assert parts.port is not None
        self._upstream = (parts.hostname, parts.port)
        self._parts = parts
        self._delay_s = delay_s
        self._left = count
        self.delayed = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The upstream URL with the proxy's address (same database, same credentials)."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        userinfo = self._parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
        return urlunsplit(self._parts._replace(netloc=netloc))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, hold=True), self._pump(up_reader, writer, hold=False)
            )
        except (OSError, asyncio.IncompleteReadError):
            pass  # either side went away: the other is closed below
        finally:
            for w in (writer, up_writer):
                w.close()
            self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, hold: bool) -> None:
        while chunk := await source.read(_CHUNK):
            if hold and self._left > 0 and PING in chunk:
                self._left -= 1
                self.delayed += 1
                await asyncio.sleep(self._delay_s)
            sink.write(chunk)
            await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()
