"""A Qdrant server older than 1.16 silently ignores update_filter: the store refuses to start on one."""

from __future__ import annotations

from typing import Any, cast

import pytest
from qdrant_client.http import models as m

from finally_indexer.core.errors import ConfigurationError
from finally_indexer.processor.stores.qdrant_server import QdrantServerStore, server_supports_update_filter


@pytest.mark.parametrize(
    ("version", "ok"),
    [("1.15.5", False), ("1.9.0", False), ("1.16.0", True), ("v1.16.3-dev", True), ("1.20.0", True),
     ("2.0.0", True), ("garbage", False)],
)  # fmt: skip
def test_server_supports_update_filter(version: str, ok: bool) -> None:
    assert server_supports_update_filter(version) is ok


class _OldServer:
    """Answers the version call (GET /) like a Qdrant 1.15 server; nothing else may be called."""

    async def info(self) -> m.VersionInfo:
        return m.VersionInfo(title="qdrant - vector search engine", version="1.15.5", commit=None)


async def test_an_old_server_is_refused_before_any_write() -> None:
    store = QdrantServerStore(cast("Any", _OldServer()), collection="c", vector_size=8)
    with pytest.raises(ConfigurationError, match=r"1\.15\.5 is too old.*>= 1\.16"):
        await store.ensure_collection()
