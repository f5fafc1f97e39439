"""A worker process for the crash test: ``python worker_main.py`` with the settings in the environment.

``TEST_EMBED_DELAY_S`` slows every embedding call (printing ``embedding`` first) so the test can
kill the process in the middle of a batch. SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence

from pipeline.helpers import HookedEmbedder

from finally_indexer.core.roles import serve_worker
from finally_indexer.core.settings import load_settings
from finally_indexer.processor.embedders.factory import build_embedder
from finally_indexer.processor.pipeline import Pipeline


async def main() -> None:
    settings = load_settings()
    delay = float(os.environ.get("TEST_EMBED_DELAY_S", "0"))

    async def slow(_: Sequence[str]) -> None:
        print("embedding", flush=True)
        await asyncio.sleep(delay)

    pipeline = await Pipeline.open(settings, embedder=HookedEmbedder(build_embedder(settings), slow))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        await serve_worker(pipeline, stop=stop)
    finally:
        await pipeline.aclose()


if __name__ == "__main__":
    asyncio.run(main())
