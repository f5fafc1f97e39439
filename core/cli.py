"""The ``finally-indexer`` command: one entrypoint for every role, parsing settings once.

Each subcommand is a small async function taking the settings, its arguments and a ``stop``
event that SIGINT/SIGTERM set (a second signal cancels outright); the roles themselves are in
:mod:`finally_indexer.core.roles`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from finally_indexer.core import roles
from finally_indexer.core.console import console_enabled, human_duration, run_console
from finally_indexer.core.errors import BrokerUnrecoverable, ConfigurationError
from finally_indexer.core.logging import configure_logging
from finally_indexer.core.redis_client import open_redis
from finally_indexer.core.settings import Settings, VectorStoreKind, load_settings
from finally_indexer.db import generations as generation_records
from finally_indexer.db.dev_schema import ensure_dev_products
from finally_indexer.db.grants import GrantPlan, grant_script
from finally_indexer.db.migrate import upgrade
from finally_indexer.db.pool import create_pool
from finally_indexer.db.seed_demo import seed_demo
from finally_indexer.devenv.servers import DEV_POSTGRES_PORT, DEV_REDIS_PORT, ServerError, dev_servers
from finally_indexer.processor.audit import AuditBusy, Auditor, Verdict
from finally_indexer.processor.enqueue import enqueue_job
from finally_indexer.processor.estimate import Estimate, dry_run
from finally_indexer.processor.generations import NothingToRollBack, rollback
from finally_indexer.processor.pipeline import Connections
from finally_indexer.processor.redis_acl import PASSWORD_PLACEHOLDER, acl_setuser_line
from finally_indexer.processor.reindex import ReindexBusy, Started, estimate_reindex, start_reindex
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.stores.generations import family_of
from finally_indexer.schemas.api import SyncRequest

log = structlog.get_logger(__name__)

Command = Callable[[Settings, argparse.Namespace, asyncio.Event], Awaitable[None]]

#: Exit codes: 2 for bad configuration (as argparse uses for bad arguments), 1 for other failures.
EXIT_CONFIG = 2
EXIT_FAILURE = 1
#: Seconds between two looks at a reindex ``reindex`` follows.
FOLLOW_POLL_S = 1.0
#: Listings ``up`` seeds into an empty ``products`` table: the size of the real catalogue.
DEMO_LISTINGS = 30_000
#: Said (on stderr) when ``check-config --acl-password-hash`` prints the password's hash.
_HASH_WARNING = (
    "warning: the printed ACL line carries an unsalted SHA-256 of REDIS_PASSWORD; it can be brute-forced"
    " offline: keep it out of logs, tickets and shared terminals\n"
)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --- commands -----------------------------------------------------------------------------------
async def cmd_api(settings: Settings, _args: argparse.Namespace, stop: asyncio.Event) -> None:
    """The control API and dashboard (Litestar on uvicorn)."""
    await roles.run_api(settings, stop=stop)


async def cmd_worker(settings: Settings, _args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Planner, indexer and reclaimers: consume the jobs and batch streams."""
    await _with_console(settings, roles.run_worker(settings, stop=stop), stop=stop)


async def cmd_sync(settings: Settings, args: argparse.Namespace, _stop: asyncio.Event) -> None:
    """Queue a synchronisation, as ``POST /sync`` does; ``--dry-run`` prints its estimate instead
    and queues nothing."""
    try:
        request = SyncRequest(
            product_ids=args.ids or "all", scope=args.scope, force=args.force, operation=args.operation,
            requested_by="cli", dry_run=args.dry_run,
        )  # fmt: skip
    except ValidationError as exc:
        raise ConfigurationError(f"sync: {exc.errors()[0]['msg']}") from None
    async with _pool(settings) as pool:
        redis = open_redis(settings)
        try:
            if request.dry_run:
                _say(estimate_summary(await dry_run(pool, settings, request.to_job(), redis=redis)))
                return
            job_id = await enqueue_job(pool, redis, jobs_stream=settings.jobs_stream, job=request.to_job())
        finally:
            await redis.aclose()
    _say(f"queued {job_id}")


def estimate_summary(found: Estimate) -> str:
    """A dry run's estimate as a few lines for a terminal."""
    t = found.tally
    duration = (
        f"{human_duration(found.duration_s)} at {found.tokens_per_minute:,} tokens/min"
        if found.duration_s is not None
        else "unknown (no rate budget known)"
    )
    return "\n".join(
        [
            (
                f"dry run: {t.listings:,} listings: {t.embed:,} to embed, {t.skip:,} unchanged (skipped), "
                f"{t.delete:,} to delete, {t.fail:,} failing"
            ),
            f"  tokens    {t.usage.tokens:,} in {t.usage.requests:,} requests ({found.model})",
            f"  cost      ${found.usd:,.4f} at ${found.usd_per_million_tokens:g} per 1M tokens",
            f"  duration  {duration}",
            "nothing was queued",
        ]
    )


async def cmd_reindex(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Build a new generation of the collection with these settings (EMBEDDING_MODEL, VECTOR_SIZE,
    TEXT_TEMPLATE …) from PostgreSQL, in the background, through the workers; the served name
    switches to it once it is complete and its audit finds no drift. ``--dry-run`` prints the
    estimate and queues nothing."""
    async with _pool(settings) as pool:
        redis = open_redis(settings)
        try:
            if args.dry_run:
                _say(estimate_summary(await estimate_reindex(pool, settings, redis=redis)))
                return
            started = await start_reindex(pool, redis, settings, requested_by="cli")
        finally:
            await redis.aclose()
        _say(f"building generation {started.generation} (job {started.job_id}); serving: {started.serving}")
        if args.wait:
            await _follow_build(pool, settings, started, stop=stop)


async def _follow_build(
    pool: asyncpg.Pool[Any], settings: Settings, started: Started, *, stop: asyncio.Event
) -> None:
    """A progress bar of the build until the served name switches to it (or the build fails)."""
    with Progress(
        TextColumn("reindex"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("reindex", total=None)
        while not stop.is_set():
            progress = await generation_records.build_progress(pool, started.job_id)
            if progress is not None and progress.total:
                bar.update(task, completed=progress.done, total=progress.total)
            status = await generation_records.status_of(pool, started.generation)
            if status == "serving":
                break
            if status in ("failed", "dropped", None):
                raise BuildFailed(f"generation {started.generation} was not built (status {status})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FOLLOW_POLL_S)
    if not stop.is_set():
        _say(f"switched: {settings.collection} now serves generation {started.generation}")


class BuildFailed(RuntimeError):
    """The generation a ``reindex`` followed was given up."""


async def cmd_rollback(settings: Settings, _args: argparse.Namespace, _stop: asyncio.Event) -> None:
    """Serve the generation a reindex replaced again (while it is kept: REINDEX_KEEP_S)."""
    async with _pool(settings) as pool:
        restored = await rollback(pool, settings)
    if settings.vector_store is VectorStoreKind.LOCAL:
        # local mode's files have one opener (the workers): they follow the record
        _say(f"rolled back: the workers point {settings.collection} at {restored.name} within seconds")
        return
    store = build_vector_store(settings)
    try:
        family = family_of(store)
        if family is not None:
            await family.point(restored.name, restored.dimensions)
    finally:
        await store.aclose()
    _say(f"rolled back: {settings.collection} now serves generation {restored.name}")


async def cmd_bridge(settings: Settings, _args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Move legacy LPUSH jobs into the jobs stream."""
    await roles.run_bridge(settings, stop=stop)


async def cmd_migrate(settings: Settings, _args: argparse.Namespace, _stop: asyncio.Event) -> None:
    """Apply the database migrations (the service's own tables) as the migration role.

    Connects with ``MIGRATE_DATABASE_URL`` (or ``POSTGRES_MIGRATE_USER``), falling back on the
    service's own connection when neither is set.
    """
    await _migrate(settings)


async def cmd_grants(settings: Settings, args: argparse.Namespace, _stop: asyncio.Event) -> None:
    """Print the GRANT statements for the service and migration roles (run them as a superuser)."""
    plan = GrantPlan(
        service_role=args.service_role,
        migrate_role=args.migrate_role,
        schema=args.schema or settings.postgres_schema or GrantPlan.schema,
        database=args.database or settings.postgres_db,
        products_schema=args.products_schema,
    )
    sys.stdout.write(grant_script(plan))


async def cmd_dev_schema(settings: Settings, _args: argparse.Namespace, _stop: asyncio.Event) -> None:
    """Create the development ``products`` table (never in production: the scraper owns it)."""
    async with _pool(settings) as pool:
        await ensure_dev_products(pool)
    _say("products table ready")


async def cmd_seed_demo(settings: Settings, args: argparse.Namespace, _stop: asyncio.Event) -> None:
    """Insert generated demo listings into ``products``."""
    async with _pool(settings) as pool:
        inserted = await seed_demo(pool, count=args.count, seed=args.seed)
    _say(f"inserted {inserted} demo listings")


class DriftFound(RuntimeError):
    """``audit --check`` found drift."""


async def cmd_audit(settings: Settings, args: argparse.Namespace, _stop: asyncio.Event) -> None:
    """Compare PostgreSQL with the collection, listing by listing; ``--repair`` queues the fixes.

    With the in-process edge store, stop the service first (or use ``POST /audit`` on it): the
    store's files have one opener.
    """
    conns = await Connections.open(settings, with_embedder=False)
    try:
        auditor = Auditor(pool=conns.pool, redis=conns.redis, store=conns.store, settings=settings)
        with Progress(
            TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task("audit", total=None)
            report = await auditor.run(
                repair=args.repair, requested_by="cli",
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
    finally:
        await conns.aclose()
    _say(audit_summary(report))
    drift = sum(n for verdict, n in report["counts"].items() if verdict != Verdict.OK.value)
    if args.check and drift:
        raise DriftFound(f"{drift} listings drifted")


def audit_summary(report: dict[str, Any]) -> str:
    """An audit report as a few lines for a terminal."""
    lines = [
        (
            f"audit {report['audit_id']}: {report['listings']} listings, {report['points']} points, "
            f"{report['duration_s']:.1f} s"
        )
    ]
    for verdict in Verdict:
        count = report["counts"].get(verdict.value, 0)
        sample = report["samples"].get(verdict.value, [])
        lines.append(
            f"  {verdict.value:<12}{count:>10}"
            + (f"   e.g. {', '.join(map(str, sample[:8]))}" if sample else "")
        )
    if report.get("in_flight"):
        lines.append(
            f"  {'in flight':<12}{report['in_flight']:>10}   of the drift: edited after {report['in_flight_after']}"
        )
    if report["repair"]:
        lines.append(f"  repair jobs  {', '.join(report['repair_job_ids']) or 'none'}")
        lines.append(f"  flags corrected {report['flags_corrected']}")
    return "\n".join(lines)


async def cmd_check_config(settings: Settings, args: argparse.Namespace, _stop: asyncio.Event) -> None:
    """Print the effective settings (secrets masked); exit 2 when they are invalid."""
    for name, value in settings.model_dump().items():
        _say(f"{name.upper()}={'**********' if isinstance(value, SecretStr) and value else value}")
    hashed = args.acl_password_hash and settings.redis_password is not None
    _say("# the Redis ACL user of least privilege (docs/operations.md, Hardening), Redis >= 7.2:")
    if hashed:
        sys.stderr.write(_HASH_WARNING)
    else:
        _say(
            f"# replace {PASSWORD_PLACEHOLDER}: '>' and the password (redis-cli), or '#' and its SHA-256 (ACL file)"
        )
    _say(acl_setuser_line(settings, hashed_password=hashed))
    _say("configuration OK")


async def cmd_up(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Everything on one machine: embedded Redis and PostgreSQL, migrations, demo data, all roles."""
    root = Path(args.data_dir)
    redis_port = args.redis_port or DEV_REDIS_PORT
    postgres_port = args.postgres_port or DEV_POSTGRES_PORT
    async with dev_servers(root, redis_port=redis_port, postgres_port=postgres_port) as urls:
        log.info("dev_servers_started", redis=urls.redis_url, postgres=urls.postgres_dsn, data_dir=str(root))
        update: dict[str, object] = {
            "database_url": SecretStr(urls.postgres_dsn),
            "redis_url": SecretStr(urls.redis_url),
        }
        if "qdrant_path" not in settings.model_fields_set:
            update["qdrant_path"] = root / "qdrant"
        settings = settings.model_copy(update=update)
        await _prepare_dev_database(settings, seed_count=args.seed_count)
        if stop.is_set():
            return
        if args.initial_sync:
            await _queue_initial_sync(settings)
        banner = _banner(settings, urls.redis_url, urls.postgres_dsn)
        await _with_console(settings, roles.run_all(settings, stop=stop), stop=stop, header=banner)
    log.info("dev_servers_stopped")


# --- helpers ------------------------------------------------------------------------------------
async def _with_console(
    settings: Settings, role: Awaitable[None], *, stop: asyncio.Event, header: str | None = None
) -> None:
    """Run ``role``, with the live console beside it when a person watches (see ``console_enabled``)
    and ``header`` at its top; without the console ``header`` is printed once."""
    if not console_enabled(settings.console, settings.log_format, terminal=sys.stdout.isatty()):
        if header is not None:
            _say(header)
        await role
        return

    async def role_then_stop() -> None:
        try:
            await role
        finally:
            stop.set()  # the console ends with the role, however it ends

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(role_then_stop())
        tasks.create_task(run_console(settings, stop=stop, header=header))


async def _migrate(settings: Settings) -> None:
    await asyncio.to_thread(upgrade, settings.migrate_dsn(), schema=settings.postgres_schema)
    log.info("migrated", schema=settings.postgres_schema or "public")


@contextlib.asynccontextmanager
async def _pool(settings: Settings) -> Any:
    pool = await create_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()


async def _prepare_dev_database(settings: Settings, *, seed_count: int) -> None:
    await _migrate(settings)
    async with _pool(settings) as pool:
        await ensure_dev_products(pool)
        if seed_count and not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM products)"):
            inserted = await seed_demo(pool, count=seed_count, seed=42)
            log.info("demo_listings_seeded", n=inserted)


async def _queue_initial_sync(settings: Settings) -> None:
    """LPUSH an incremental sync through the legacy contract, exactly as the scraper would.

    Scope "changed" embeds only listings not yet in the collection with their current content, so
    a restart after a full load costs no embedding call.
    """
    job = {
        "operation": "sync",
        "product_ids": "all",
        "scope": "changed",
        "requested_by": "finally-indexer up",
    }
    redis = open_redis(settings)
    try:
        await redis.lpush(settings.legacy_list, json.dumps(job))
    finally:
        await redis.aclose()
    log.info("initial_sync_queued", list=settings.legacy_list, scope="changed")


def _banner(settings: Settings, redis_url: str, postgres_dsn: str) -> str:
    base = f"http://{settings.http_host}:{settings.http_port}"
    return "\n".join(
        [
            "",
            "finally-indexer is up (Ctrl-C stops it; data is kept under the data dir)",
            f"  API          {base}/",
            f"  dashboard    {base}/dashboard",
            f"  status       {base}/status",
            f"  metrics      {base}/metrics",
            f"  API docs     {base}/schema",
            f"  Redis        {redis_url}   (legacy list: {settings.legacy_list})",
            f"  PostgreSQL   {postgres_dsn}",
            f"  vectors      {settings.vector_store.value} ({settings.qdrant_path})",
            "  try          redis-cli -p "
            + redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
            + f' LPUSH {settings.legacy_list} \'{{"operation": "sync", "product_ids": "all"}}\'',
            "",
        ]
    )


# --- argument parsing and the event loop --------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one subcommand per role or task)."""
    parser = argparse.ArgumentParser(
        prog="finally-indexer",
        description="Keeps a Qdrant collection of used-motorbike listings in step with PostgreSQL.",
        epilog="Settings come from the environment (see docs/configuration.md) and --env-file.",
    )
    parser.add_argument("--env-file", type=Path, help="read settings from this .env file as well")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=func.__doc__)
        cmd.set_defaults(func=func)
        return cmd

    up = add("up", cmd_up, "run everything locally on embedded Redis and PostgreSQL")
    up.add_argument("--data-dir", default="var/dev", help="where server data lives (default: var/dev)")
    up.add_argument("--redis-port", type=int, help="Redis port (default 56379, or any free one)")
    up.add_argument("--postgres-port", type=int, help="PostgreSQL port (default 55432, or any free one)")
    up.add_argument(
        "--seed-count",
        type=int,
        default=DEMO_LISTINGS,
        help=f"demo listings to insert when products is empty (default {DEMO_LISTINGS}; 0 = none)",
    )
    up.add_argument(
        "--no-initial-sync",
        dest="initial_sync",
        action="store_false",
        help="do not queue the start-up sync of listings that are not indexed yet",
    )
    add("api", cmd_api, "serve the control API, dashboard and /metrics")
    add("worker", cmd_worker, "run a worker: planner, indexer, reclaimers")
    sync = add("sync", cmd_sync, "queue a synchronisation (or estimate one with --dry-run)")
    sync.add_argument("ids", nargs="*", type=int, help="product ids (default: every listing)")
    sync.add_argument(
        "--scope", choices=("changed", "all"), default="changed",
        help="without ids: only listings changed since indexed (default), or all",
    )  # fmt: skip
    sync.add_argument("--force", action="store_true", help="re-embed even unchanged listings")
    sync.add_argument("--operation", choices=("sync", "update", "delete"), default="sync")
    sync.add_argument(
        "--dry-run", action="store_true",
        help="queue nothing: print what it would embed, skip and delete, its tokens, cost and duration",
    )  # fmt: skip
    reindex = add("reindex", cmd_reindex, "build a new generation with these settings, then switch to it")
    reindex.add_argument(
        "--dry-run", action="store_true",
        help="queue nothing: print what it would embed, its tokens, cost and duration",
    )  # fmt: skip
    reindex.add_argument(
        "--no-wait", dest="wait", action="store_false", help="queue the build and return at once"
    )
    add("rollback", cmd_rollback, "serve the generation the last reindex replaced again")
    add("bridge", cmd_bridge, "move legacy LPUSH jobs into the jobs stream")
    add("migrate", cmd_migrate, "apply database migrations (as MIGRATE_DATABASE_URL's role)")
    grants = add("grants", cmd_grants, "print the PostgreSQL GRANT statements of least privilege")
    grants.add_argument("--service-role", default=GrantPlan.service_role, help="the service's role")
    grants.add_argument("--migrate-role", default=GrantPlan.migrate_role, help="the migrations' role")
    grants.add_argument("--schema", help="the service's schema (default: POSTGRES_SCHEMA or finally_indexer)")
    grants.add_argument("--database", help="the database (default: POSTGRES_DB)")
    grants.add_argument("--products-schema", default=GrantPlan.products_schema, help="schema of products")
    seed = add("seed-demo", cmd_seed_demo, "insert generated demo listings into products")
    seed.add_argument("--count", type=int, default=DEMO_LISTINGS, help=f"listings (default {DEMO_LISTINGS})")
    seed.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    add("dev-schema", cmd_dev_schema, "create the development products table")
    audit = add("audit", cmd_audit, "compare PostgreSQL with the collection (and repair drift)")
    audit.add_argument("--repair", action="store_true", help="queue the fixes as ordinary jobs")
    audit.add_argument("--check", action="store_true", help="exit with status 1 when drift is found")
    check = add("check-config", cmd_check_config, "validate and print the settings")
    check.add_argument(
        "--acl-password-hash", action="store_true",
        help="print the ACL line with the SHA-256 of REDIS_PASSWORD (unsalted: keep it out of logs)",
    )  # fmt: skip
    return parser


async def _run(func: Command, settings: Settings, args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_signal(signame: str) -> None:
        if stop.is_set():
            log.warning("forced_stop", signal=signame)
            if task is not None:
                task.cancel()
            return
        log.info("stopping", signal=signame, hint="send it again to force")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        await func(settings, args, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``finally-indexer`` script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        overrides: dict[str, object] = {"_env_file": args.env_file} if args.env_file else {}
        settings = load_settings(**overrides)
    except ConfigurationError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_CONFIG
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(_run(args.func, settings, args))
    except asyncio.CancelledError:
        return 130  # forced stop: the shell convention for an interrupted command
    except Exception as exc:
        return _exit_code(exc)
    return 0


def _exit_code(exc: Exception) -> int:
    """A known failure (also when a task group wrapped it) as a message and an exit code; else raise."""
    found = exc
    while isinstance(found, ExceptionGroup) and len(found.exceptions) == 1:
        found = found.exceptions[0]
    if isinstance(found, ConfigurationError):
        sys.stderr.write(f"{found}\n")
        return EXIT_CONFIG
    if isinstance(
        found,
        (
            ServerError,
            AuditBusy,
            DriftFound,
            BrokerUnrecoverable,
            ReindexBusy,
            NothingToRollBack,
            BuildFailed,
        ),
    ):
        sys.stderr.write(f"error: {found}\n")
        return EXIT_FAILURE
    raise exc


if __name__ == "__main__":
    sys.exit(main())
