"""Generate docs/configuration.md and .env.example from the Settings class.

    python scripts/gen_config_doc.py           # rewrite both files
    python scripts/gen_config_doc.py --check   # exit 1 if either is out of date (run by the tests)

Names, defaults, types and bounds come from ``Settings`` itself; the one-line meanings live in
``MEANINGS`` below (those of the ``*_FILE`` settings follow from ``SECRET_FIELDS``), and a setting
without one is an error, so a new setting cannot go undocumented.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import typing
from pathlib import Path
from typing import Any

from annotated_types import Ge, Le
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from finally_indexer.core.settings import SECRET_FIELDS, Settings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
ENV_EXAMPLE = ROOT / ".env.example"

#: Section title → settings in it, in the order they are documented.
SECTIONS: dict[str, tuple[str, ...]] = {
    "PostgreSQL": (
        "postgres_host", "postgres_port", "postgres_user", "postgres_password", "postgres_db",
        "database_url", "postgres_schema", "db_pool_min", "db_pool_max", "db_pool_acquire_timeout_s",
        "db_command_timeout_s",
    ),
    "Redis": ("redis_host", "redis_port", "redis_password", "redis_url"),
    "Vector store (Qdrant)": (
        "vector_store", "qdrant_host", "qdrant_port", "qdrant_url", "qdrant_api_key", "qdrant_path",
        "collection", "qdrant_timeout_s",
    ),
    "Embeddings": (
        "embedder", "openai_api_key", "openai_base_url", "embedding_model", "vector_size",
        "embedding_max_input_tokens", "embedding_concurrency", "embedding_tpm", "embedding_rpm",
        "embedding_burst_s", "text_template",
    ),
    "Cost accounting and the console": ("embedding_prices", "console"),
    "Streams and processing": (
        "legacy_list", "jobs_stream", "batch_stream", "events_stream", "dead_letter_stream",
        "batch_size", "reclaim_idle_ms", "max_deliveries", "worker_concurrency", "consumer_name",
        "stream_retention_s", "tombstone_retention_s", "failure_retention_s", "job_retention_s", "handler_max_s", "legacy_payload_max_bytes",
        "work_max_age_s", "breaker_failures", "breaker_open_s",
    ),
    "Audit": ("audit_interval_s", "audit_keep_reports"),
    "Generations": ("reindex_keep_s",),
    "HTTP API and metrics": ("http_host", "http_port", "api_key", "metrics_port"),
    "Logging": ("log_level", "log_format"),
    # --- least privilege, TLS, secret files (docs/operations.md, Hardening) ---
    "Least privilege and TLS": (
        "migrate_database_url", "postgres_migrate_user", "postgres_migrate_password",
        "postgres_sslmode", "postgres_sslrootcert", "postgres_sslcert", "postgres_sslkey",
        "redis_username", "redis_tls", "redis_ssl_ca_certs", "redis_ssl_certfile", "redis_ssl_keyfile",
        "read_api_key", "auth_failures_per_minute",
    ),
    "Secrets from files": tuple(f"{name}_file" for name in SECRET_FIELDS),
}  # fmt: skip

MEANINGS: dict[str, str] = {
    "postgres_host": "PostgreSQL host (ignored when `DATABASE_URL` is set).",
    "postgres_port": "PostgreSQL port.",
    "postgres_user": "PostgreSQL user.",
    "postgres_password": "PostgreSQL password (secret).",
    "postgres_db": "Database holding `products` and the service's tables.",
    "database_url": "Full DSN, e.g. `postgresql://user:pw@host:5432/db`; wins over the `POSTGRES_*` parts (secret).",
    "postgres_schema": "Schema of the service's tables (`search_path` = this schema, then `public`); unset = `public`.",
    "db_pool_min": "Connections the asyncpg pool keeps open.",
    "db_pool_max": "Most connections the asyncpg pool opens (per process).",
    "redis_host": "Redis host (ignored when `REDIS_URL` is set).",
    "redis_port": "Redis port.",
    "redis_password": "Redis password (secret).",
    "redis_url": "Full URL, e.g. `redis://:pw@host:6379/0` or `rediss://` for TLS; wins over host/port (secret).",
    "vector_store": "`server`: a Qdrant server; `edge`: Qdrant's engine in-process at `QDRANT_PATH`; "
    "`local`: qdrant-client's local mode (tests, small data).",
    "qdrant_host": "Qdrant server host (`VECTOR_STORE=server`).",
    "qdrant_port": "Qdrant server HTTP port.",
    "qdrant_url": "Qdrant server URL; wins over host/port.",
    "qdrant_api_key": "Qdrant server API key (secret).",
    "qdrant_path": "Folder of the in-process store (`edge`, `local`).",
    "collection": "Name of the Qdrant collection.",
    "embedder": "`openai`, `hashing` (offline, deterministic) or `auto` (OpenAI when `OPENAI_API_KEY` is set).",
    "openai_api_key": "OpenAI API key (secret).",
    "openai_base_url": "Base URL of an OpenAI-compatible embeddings server; unset = OpenAI.",
    "embedding_model": "Embedding model name.",
    "vector_size": "Vector dimensions; must match the model (3072 for text-embedding-3-large).",
    "embedding_max_input_tokens": "Longer listing texts are cut to this many tokens before embedding.",
    "embedding_concurrency": (
        "Most embedding requests in flight per worker process; the adaptive limiter moves below it"
        " (grows while latency is the limit, halves on 429/5xx)."
    ),
    "embedding_tpm": (
        "Tokens per minute the API key may spend on the model, shared by every worker through Redis;"
        " 0 = learn it from the API's `x-ratelimit-*` headers."
    ),
    "embedding_rpm": "Requests per minute the API key may make on the model (shared, as above); 0 = learn it.",
    "embedding_burst_s": (
        "Seconds of the limits the shared budget may spend ahead of the steady pace (absorbs gaps"
        " between requests); keep it no larger than the provider's own tolerance."
    ),
    "text_template": "How a listing becomes the embedded text; placeholders "
    "`{title}` `{year}` `{price}` `{mileage}` `{content}` `{brand}`.",
    "legacy_list": "Redis list the scraper `LPUSH`es jobs onto (the legacy contract).",
    "jobs_stream": "Stream of validated jobs; keep the `{…}` hash tag equal to `LEGACY_LIST` (Redis Cluster).",
    "batch_stream": "Stream of planned batches consumed by the indexers.",
    "events_stream": "Stream of outcomes (status, dashboard, downstream cache invalidation).",
    "dead_letter_stream": "Stream of entries that failed for good.",
    "batch_size": "Listings per batch message.",
    "reclaim_idle_ms": "A pending entry idle this long (ms) is reclaimed from its consumer.",
    "max_deliveries": "Deliveries after which an entry is dead-lettered.",
    "legacy_payload_max_bytes": (
        "Largest job payload (bytes) the planner parses; a larger one is a malformed job "
        "(`payload_too_large`), recorded with its size, SHA-256 and first 16 KiB."
    ),
    "stream_retention_s": (
        "Acknowledged entries of the jobs and batch streams are kept this long (s) as an audit log,"
        " then trimmed; undelivered or pending entries are never trimmed."
    ),
    "tombstone_retention_s": (
        "Deleted listings are remembered this long (s), so that a late write of a row read before the"
        " delete cannot bring them back; then forgotten."
    ),
    "failure_retention_s": (
        "Resolved failures (succeeded, re-queued, discarded) are kept this long (s) after they were"
        " resolved, then deleted by the workers' housekeeping; open failures are never deleted."
    ),
    "job_retention_s": (
        "Finished jobs (completed, failed) and their batches are kept this long (s) after they"
        " finished, then deleted by the workers' housekeeping; pending and running jobs are never deleted."
    ),
    "db_command_timeout_s": "A PostgreSQL statement that takes longer than this (s) fails (a transient failure).",
    "db_pool_acquire_timeout_s": (
        "Waiting for a free pooled PostgreSQL connection fails after this long (s): a transient"
        " failure instead of a wait without end when every connection is held by hung calls."
    ),
    "qdrant_timeout_s": "A request to the Qdrant server (`VECTOR_STORE=server`) fails after this many whole seconds (transient).",
    "work_max_age_s": (
        "A redelivered entry whose work entered its stream longer ago than this (s) is dead-lettered"
        " with reason `max_age_exceeded`, even when all its failures were outages; replay it with"
        " `POST /retry`."
    ),
    "breaker_failures": (
        "Consecutive transient failures of one dependency (PostgreSQL, Redis, vector store, embedding"
        " API) that open its breaker: the worker then pauses instead of retrying."
    ),
    "breaker_open_s": (
        "An open breaker lets one probe delivery through after this long (s); its success closes the"
        " breaker, its failure opens it again."
    ),
    "handler_max_s": (
        "A delivery is kept claimed (heartbeats) at most this long (s); a handler hung past it lets"
        " its entries go idle, and another worker reclaims them."
    ),
    "audit_interval_s": (
        "Workers audit the collection against PostgreSQL this often (s); one audit at a time across"
        " all workers; 0 = never (run `finally-indexer audit` or `POST /audit` instead)."
    ),
    "audit_keep_reports": "Audit reports kept in PostgreSQL (the newest).",
    "reindex_keep_s": (
        "Seconds a generation replaced by a reindex is kept (and still written) for "
        "`finally-indexer rollback`, before housekeeping drops it."
    ),
    "worker_concurrency": (
        "Most batches a worker process holds at once; unset: 32 with the OpenAI embedder (their texts"
        " are packed into shared requests: a ceiling, the embedding budget sets the pace), 2 offline."
    ),
    "consumer_name": "Consumer name in the groups; unset = host name and process id.",
    "http_host": "Address the API binds to.",
    "http_port": "Port the API listens on.",
    "api_key": (
        "Key required by the mutating endpoints (`X-API-Key`); unset, they accept only loopback"
        " clients. At least 16 characters: set but empty or shorter, start-up stops."
        " Required in production (secret)."
    ),
    "metrics_port": "Port of a standalone `/metrics` server for worker and bridge processes; 0 = none.",
    "log_level": "`DEBUG`, `INFO`, `WARNING` or `ERROR`.",
    # --- least privilege, TLS, secret files ---
    "migrate_database_url": (
        "DSN of the migration role, used only by `finally-indexer migrate`; unset = `POSTGRES_MIGRATE_USER`,"
        " else the service's own connection (secret)."
    ),
    "postgres_migrate_user": "Migration role on the `POSTGRES_*` host (when `MIGRATE_DATABASE_URL` is unset).",
    "postgres_migrate_password": "Password of `POSTGRES_MIGRATE_USER` (secret).",
    "postgres_sslmode": (
        "libpq `sslmode` for both connections: `verify-full` checks the certificate against"
        " `POSTGRES_SSLROOTCERT` and the host name; unset = the driver's default."
    ),
    "postgres_sslrootcert": "CA certificate file (PEM) that signed the PostgreSQL server's certificate.",
    "postgres_sslcert": "Client certificate file (PEM), when PostgreSQL asks for one.",
    "postgres_sslkey": "Private key of `POSTGRES_SSLCERT`.",
    "redis_username": "Redis ACL user (`check-config` prints its `ACL SETUSER` line); unset = `default`.",
    "redis_tls": "Connect to `REDIS_HOST` over TLS (`rediss://`); a `REDIS_URL` says it with its scheme.",
    "redis_ssl_ca_certs": "CA certificate file (PEM) that signed the Redis server's certificate.",
    "redis_ssl_certfile": "Client certificate file (PEM), when Redis asks for one (`tls-auth-clients`).",
    "redis_ssl_keyfile": "Private key of `REDIS_SSL_CERTFILE`.",
    "read_api_key": (
        "Key the read endpoints (`/status`, `/failures`, `/jobs`, `/listings`, `/audit`, dashboard)"
        " require (`X-API-Key`; `API_KEY` works there too); unset = open. At least 16 characters (secret)."
    ),
    "auth_failures_per_minute": "Failed authentications a client may make per minute; more get 429.",
    "log_format": "`console` (people), `json` (log shippers), or `auto`: `console` on a terminal, `json` otherwise.",
    "embedding_prices": (
        "US dollars per 1M input tokens, per model, as a JSON object (replaces the whole table); a model"
        " it does not name is counted at 0. Prices jobs (`GET /jobs/{id}`), metrics and dry runs."
    ),
    "console": (
        "The live progress display of `up` and `worker`: `auto` shows it when stdout is a terminal and"
        " logs are not JSON; `on`, `off`."
    ),
}


# Every secret can come from a file (``<NAME>_FILE``, Docker secrets): one meaning says it for all.
MEANINGS |= {
    f"{name}_file": f"File holding `{name.upper()}` (Docker secrets); setting both is an error."
    for name in SECRET_FIELDS
}


def _default(info: FieldInfo) -> str:
    value: Any = info.default
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "":
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, dict):  # read from the environment as JSON
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _form(info: FieldInfo) -> str:
    annotation = info.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is dict:
        return "JSON object"
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    base = args[0] if args and typing.get_origin(annotation) is not typing.Literal else annotation
    if typing.get_origin(base) is typing.Literal:  # an optional choice
        return " \\| ".join(f"`{a}`" for a in typing.get_args(base))
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in base)
    names: dict[object, str] = {
        int: "integer", float: "number", bool: "`true` \\| `false`", str: "text", Path: "path",
        SecretStr: "secret",
    }  # fmt: skip
    name = names.get(base, str(base))
    bounds = [f"≥ {m.ge}" for m in info.metadata if isinstance(m, Ge)]
    bounds += [f"≤ {m.le}" for m in info.metadata if isinstance(m, Le)]
    return name + (f" ({', '.join(bounds)})" if bounds else "")


def _check_complete() -> None:
    fields = set(Settings.model_fields)
    listed = {name for names in SECTIONS.values() for name in names}
    problems = [f"{n}: no meaning in MEANINGS" for n in sorted(fields - set(MEANINGS))]
    problems += [f"{n}: in no section of SECTIONS" for n in sorted(fields - listed)]
    problems += [f"{n}: not a setting any more" for n in sorted((listed | set(MEANINGS)) - fields)]
    if problems:
        raise SystemExit(
            "scripts/gen_config_doc.py is out of step with Settings:\n  " + "\n  ".join(problems)
        )


def _cell(text: str) -> str:
    return text.replace("\n", "\\n").replace("|", "\\|")


def render_doc() -> str:
    """docs/configuration.md."""
    lines = [
        "# Configuration",
        "",
        "<!-- generated by scripts/gen_config_doc.py from core/settings.py: do not edit by hand -->",
        "",
        "Every setting is an environment variable (case-insensitive). `finally-indexer --env-file FILE`",
        "reads a `.env` file as well; `finally-indexer check-config` validates the settings and prints",
        "them with secrets masked, and exits with status 2 and one line per invalid variable otherwise.",
        "Templates: `.env.example` (everything, with defaults), `.env.dev`, `.env.prod`.",
        "",
    ]
    for title, names in SECTIONS.items():
        lines += [f"## {title}", "", "| variable | default | form | meaning |", "| --- | --- | --- | --- |"]
        for name in names:
            info = Settings.model_fields[name]
            default = _default(info)
            shown = f"`{_cell(default)}`" if default else "—"
            lines.append(f"| `{name.upper()}` | {shown} | {_form(info)} | {MEANINGS[name]} |")
        lines.append("")
    return "\n".join(lines)


def render_env_example() -> str:
    """.env.example: every setting, commented out at its default."""
    lines = [
        "# Every setting of finally-indexer with its default (generated by scripts/gen_config_doc.py).",
        "# Copy what you need into .env.dev / .env.prod and uncomment it. See docs/configuration.md.",
    ]
    for title, names in SECTIONS.items():
        lines += ["", f"# --- {title} ---"]
        for name in names:
            default = _default(Settings.model_fields[name])
            if "\n" in default:
                default = '"' + default.replace("\n", "\\n") + '"'
            lines += [f"# {MEANINGS[name].replace(chr(96), '')}", f"# {name.upper()}={default}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a generated file is out of date")
    args = parser.parse_args(argv)
    _check_complete()
    stale = []
    for path, text in ((DOC, render_doc()), (ENV_EXAMPLE, render_env_example())):
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        sys.stderr.write(f"out of date: {', '.join(stale)}; run python scripts/gen_config_doc.py\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
