"""What both embedded servers need: binaries, free ports, child processes that die with us.

Every server started here is remembered until it is stopped, and an ``atexit`` hook stops the
ones still running, so an interrupted test session or a crashed ``up`` leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

BOOTSTRAP_HINT = "run scripts/bootstrap.sh"
#: Linux prctl option: deliver a signal to this process when its parent dies.
_PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """An embedded server could not be found, started or stopped."""


class Stoppable(Protocol):
    def stop(self) -> None: ...


_running: set[Stoppable] = set()
_lock = threading.Lock()
_hook_installed = False


def track(server: Stoppable) -> None:
    """Remember a started server so that it is stopped at interpreter exit at the latest."""
    global _hook_installed  # noqa: PLW0603 - one hook per process
    with _lock:
        _running.add(server)
        if not _hook_installed:
            atexit.register(stop_all)
            _hook_installed = True


def untrack(server: Stoppable) -> None:
    with _lock:
        _running.discard(server)


def stop_all() -> None:
    """Stop every server still running (the ``atexit`` hook)."""
    with _lock:
        servers = list(_running)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


def find_binary(name: str, *extra_dirs: Path) -> Path:
    """``name`` on ``PATH`` or in ``extra_dirs``, or a :class:`ServerError` saying how to install it."""
    for folder in extra_dirs:
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found is None:
        raise ServerError(f"{name} not found: {BOOTSTRAP_HINT}")
    return Path(found)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the servers do: a port whose old connections linger in TIME_WAIT is free for them
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port(preferred: int | None) -> int:
    """``preferred`` when it is free, any free port otherwise (or when none is preferred)."""
    if preferred and port_is_free(preferred):
        return preferred
    return free_port()


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: Sequence[str], *, log: Path) -> subprocess.Popen[bytes]:
    """Start a long-running child in its own session (Ctrl-C reaches us, not it) that dies with us."""
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - argv is built from fixed binaries and paths
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if os.name == "posix" else None,  # noqa: PLW1509
        )


def run(argv: Sequence[str], *, what: str, timeout: float = 120) -> str:
    """Run a short command; a failure becomes a :class:`ServerError` carrying its output."""
    try:
        done = subprocess.run(  # noqa: S603 - argv is built from fixed binaries and paths
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerError(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        raise ServerError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done.stdout


def as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run as ``user`` through ``runuser`` (only needed, and only possible, as root)."""
    if user is None:
        return list(argv)
    return [str(find_binary("runuser", Path("/usr/sbin"), Path("/sbin"))), "-u", user, "--", *argv]


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def terminate(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, wait, then SIGKILL if it would not go."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
