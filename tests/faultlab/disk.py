"""A filesystem of its own for the edge store (a tmpfs), and filling it to the last byte.

Mounting needs root (CAP_SYS_ADMIN): :func:`can_mount` says whether this process may, so that
a run elsewhere skips the disk-full fault instead of failing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

__all__ = ["FILLER", "can_mount", "fill", "tmpfs"]

#: Name of the file that takes a filesystem's last free byte.
FILLER: Final = "filler"


def _command(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN)."""
    with tempfile.TemporaryDirectory(prefix="faultlab-mount-probe-") as probe:
        try:
            _command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe)
        except (OSError, subprocess.CalledProcessError):
            return False
        _command("umount", probe)
        return True


@contextlib.asynccontextmanager
async def tmpfs(path: Path, *, size: int) -> AsyncIterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path`` (created) for the block; unmounted after."""
    await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(_command, "mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        # lazy: a process that still has a file open there does not keep the mount alive for us
        await asyncio.to_thread(_command, "umount", "--lazy", str(path))


def fill(folder: Path) -> int:
    """Fill the filesystem of ``folder`` to the last byte with :data:`FILLER`; the bytes written."""
    written = 0
    fd = os.open(folder / FILLER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1024 * 1024, 4096, 1):
            with contextlib.suppress(OSError):  # ENOSPC: on to smaller chunks
                while True:
                    written += os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    if free := os.statvfs(folder).f_bavail:
        raise OSError(errno.EIO, f"{folder} still has {free} free blocks")
    return written
