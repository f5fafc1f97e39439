"""An embedded Redis: Debian's ``redis-server`` as a child process on 127.0.0.1.

Durable by default (``appendonly yes``, RDB snapshots off): a stop with ``SHUTDOWN`` flushes the
append-only file, so the next start finds every key and stream entry.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from finally_indexer.devenv._process import (
    ServerError,
    find_binary,
    pick_port,
    spawn,
    tail,
    terminate,
    track,
    untrack,
)
from finally_indexer.devenv.tls import TlsFiles

#: Seconds a fresh server gets to answer PING (it loads the AOF first, which is quick at dev sizes).
START_TIMEOUT = 30.0


class RedisServer:
    """One ``redis-server`` process with its data in ``data_dir``. Use :meth:`start` / :meth:`stop`."""

    def __init__(self, data_dir: Path, *, port: int | None = None, tls: TlsFiles | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.preferred_port = port
        self.port = 0
        #: With TLS files the server listens on TLS only (``rediss://``): no plain port at all.
        self.tls = tls
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def _pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def _log(self) -> Path:
        return self.data_dir / "redis.log"

    def start(self) -> str:
        """Start the server, wait until it answers PING, and return its URL."""
        binary = find_binary("redis-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stop_stale()
        self.port = pick_port(self.preferred_port)
        argv = [
            str(binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
            "--pidfile", str(self._pidfile),
            "--logfile", str(self._log),
        ]  # fmt: skip
        if self.tls is not None:
            argv[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            argv += [
                "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", "yes" if self.tls.auth_clients else "no",
            ]  # fmt: skip
        self._proc = spawn(argv, log=self.data_dir / "redis.stdout")
        track(self)
        try:
            self._wait_ready(self._proc)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        client = self._client()
        try:
            while True:
                if proc.poll() is not None:
                    raise ServerError(f"redis-server exited ({proc.returncode}):\n{tail(self._log)}")
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"redis-server did not answer PING in {START_TIMEOUT}s:\n{tail(self._log)}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def _client(self) -> redis.Redis:
        # no retries: a refused connection is the answer we poll for, and SHUTDOWN drops the link
        tls: dict[str, Any] = {}
        if self.tls is not None:
            # the server's own certificate doubles as a client certificate (same CA) when asked for one
            tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)}
            if self.tls.auth_clients:
                tls |= {"ssl_certfile": str(self.tls.cert), "ssl_keyfile": str(self.tls.key)}
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0), **tls
        )

    def stop(self) -> None:
        """``SHUTDOWN`` (flushes the AOF) and wait; SIGTERM if that does not work. Idempotent."""
        proc, self._proc = self._proc, None
        untrack(self)
        if proc is None or proc.poll() is not None:
            return
        client = self._client()
        with contextlib.suppress(redis.RedisError):
            client.shutdown()
        client.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            terminate(proc)

    def stop_stale(self) -> None:
        """A server left running on this data dir by a killed parent would corrupt a second one."""
        try:
            pid = int(self._pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"redis-server" not in cmdline:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
