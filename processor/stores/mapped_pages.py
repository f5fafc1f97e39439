"""Hand the pages a full scan read from memory-mapped files back to the kernel (Linux).

The edge engine reads payloads through shared memory mappings of its files. A scan of every
point (an audit) touches each payload page once, and each stays in the process's resident set
until the kernel needs the memory: after an audit of 1,000,000 listings the worker holds ~250 MB
more than before (``python bench/audit.py``), on every dashboard and against every memory limit.
PostgreSQL keeps a sequential scan in a small ring of buffers for the same reason.

:func:`release_mapped` advises ``MADV_PAGEOUT`` (Linux 5.4) on this process's shared mappings of
the files in a folder (for the edge store: its payload storage, not the vectors searches use).
The advice only asks the kernel to reclaim those pages now (a dirty page is written back, never
dropped), so it cannot change what any address reads, even if a mapping changed between reading
``/proc/self/maps`` and the call; a page read again later comes from the page cache or the disk.
Where the advice is not supported (another OS, an older kernel) it does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Final

__all__ = ["MAPS_FILE", "release_mapped"]

#: ``MADV_PAGEOUT`` from <sys/mman.h> (Linux).
MADV_PAGEOUT: Final = 21
#: This process's memory mappings (Linux).
MAPS_FILE: Final = Path("/proc/self/maps")


def _madvise() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """libc's ``madvise``, or ``None`` off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_MADVISE = _madvise()


def release_mapped(folder: Path, directory: str) -> int:
    """Ask the kernel to reclaim this process's pages of shared mappings of files under ``folder``
    in a directory named ``directory`` (at any depth).

    Returns the number of mappings advised (0 where the advice is unavailable or refused).
    """
    if _MADVISE is None:
        return 0
    root = folder.resolve()
    prefix = f"{root}/"
    advised = 0
    try:
        lines = MAPS_FILE.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        # address perms offset dev inode path: "7f..-7f.. rw-s 00000000 fd:01 1234 /path/file"
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[1][3] != "s" or not fields[5].startswith(prefix):
            continue
        if directory not in Path(fields[5]).relative_to(root).parts[:-1]:
            continue
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        if _MADVISE(start, end - start, MADV_PAGEOUT) == 0:
            advised += 1
    return advised
