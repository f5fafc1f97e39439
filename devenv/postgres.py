"""An embedded PostgreSQL: Debian's ``initdb`` / ``pg_ctl`` on a data dir of our own.

``initdb`` refuses to run as root, so as root every server command runs as the ``postgres``
user through ``runuser`` and the data dir is handed over to that user (its parent folders are
made traversable). Local trust authentication on 127.0.0.1 only: a development server.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
from pathlib import Path

import psycopg
from psycopg import sql

from finally_indexer.devenv._process import (
    ServerError,
    as_user,
    find_binary,
    pick_port,
    run,
    tail,
    track,
    untrack,
)
from finally_indexer.devenv.tls import TlsFiles

PG_USER = "postgres"
#: Seconds ``pg_ctl`` waits for startup and shutdown.
PG_CTL_TIMEOUT = 60
#: Tests open many small pools against one server; the default of 100 is too tight for that.
MAX_CONNECTIONS = 300
#: Trade crash safety for speed; only for throwaway servers (tests). A clean stop loses nothing.
FAST_UNSAFE = ("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")


def _pg_bin_dirs() -> list[Path]:
    """Debian keeps the server binaries off PATH, one folder per major version; newest first."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return []
    versions = sorted(
        (p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True
    )
    return [v / "bin" for v in versions]


class PostgresServer:
    """One PostgreSQL cluster in ``data_dir`` serving ``database``. Use :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        database: str = "finally",
        durable: bool = True,
        tls: TlsFiles | None = None,
    ) -> None:
        self.root = data_dir.resolve()
        #: With TLS files the server accepts TLS (``ssl=on``); clients choose ``sslmode``.
        self.tls = tls
        self.preferred_port = port
        self.database = database
        self.durable = durable
        self.port = 0
        self._started = False
        self._user = PG_USER if os.geteuid() == 0 else None

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def _log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{self.database}"

    def _bin(self, name: str) -> str:
        return str(find_binary(name, *_pg_bin_dirs()))

    def _cmd(self, *argv: str) -> list[str]:
        return as_user(self._user, argv)

    def start(self) -> str:
        """initdb (first time only), start the server, create the database; return the DSN."""
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        self.stop_stale()
        self.port = pick_port(self.preferred_port)
        options = [f"-p {self.port}", f"-k {self.socket_dir}", "-c listen_addresses=127.0.0.1"]
        options.append(f"-c max_connections={MAX_CONNECTIONS}")
        if not self.durable:
            options.extend(FAST_UNSAFE)
        if self.tls is not None:
            files = self.tls.install(self.root / "tls", owner=self._user)
            options += ["-c ssl=on", f"-c ssl_cert_file={files.cert}", f"-c ssl_key_file={files.key}",
                        f"-c ssl_ca_file={files.ca}"]  # fmt: skip
        pg_ctl = self._bin("pg_ctl")
        track(self)
        self._started = True
        try:
            run(
                self._cmd(pg_ctl, "start", "-w", "-t", str(PG_CTL_TIMEOUT), "-D", str(self.pgdata),
                          "-l", str(self._log), "-o", " ".join(options)),
                what="pg_ctl start",
                timeout=PG_CTL_TIMEOUT + 10,
            )  # fmt: skip
            self._create_database()
        except ServerError as exc:
            self.stop()
            raise ServerError(f"{exc}\n{tail(self._log)}") from None
        except BaseException:
            self.stop()
            raise
        return self.dsn

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: sessions are cut, everything committed is kept. Idempotent."""
        untrack(self)
        if not self._started:
            return
        self._started = False
        pg_ctl = self._bin("pg_ctl")
        with contextlib.suppress(ServerError):
            run(self._cmd(pg_ctl, "stop", "-m", "fast", "-w", "-D", str(self.pgdata)), what="pg_ctl stop")

    def stop_stale(self) -> None:
        """A server left running by a killed parent: stop it before starting ours."""
        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(ServerError):
                run(self._cmd(self._bin("pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(self.pgdata)),
                    what="pg_ctl stop (stale server)")  # fmt: skip

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._user is None:
            return
        _make_traversable(self.root)
        entry = pwd.getpwnam(self._user)
        for path in (self.root, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if self.pgdata.exists():
            for path in [self.pgdata, *self.pgdata.rglob("*")]:
                os.lchown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
        run(
            self._cmd(self._bin("initdb"), "-D", str(self.pgdata), "-U", PG_USER, "--auth=trust",
                      "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"),
            what="initdb",
        )  # fmt: skip

    def _create_database(self) -> None:
        admin = f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"
        if self.tls is not None:
            admin += f"?sslmode=verify-full&sslrootcert={self.tls.ca}"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))


def _make_traversable(path: Path) -> None:
    """Let other users pass through every parent folder (not list them: only the x bit)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
