"""The one settings class, parsed once at the entrypoint and passed down by constructor.

Names follow the seed (``POSTGRES_HOST``, ``QDRANT_HOST``, ``REDIS_HOST``, ``OPENAI_API_KEY``,
``VECTOR_SIZE`` …); the URL forms (``DATABASE_URL``, ``REDIS_URL``, ``QDRANT_URL``) win over the
host/port parts when set. Secrets are ``SecretStr`` and never appear in ``repr`` or logs.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from finally_indexer.core import constants as c
from finally_indexer.core.errors import ConfigurationError


class EmbedderKind(StrEnum):
    """Which embedder to use. ``auto`` means OpenAI when a key is set, else the offline one."""

    AUTO = "auto"
    OPENAI = "openai"
    HASHING = "hashing"


class VectorStoreKind(StrEnum):
    """Where vectors live: a Qdrant server, Qdrant's in-process engine, or qdrant-client's local mode."""

    SERVER = "server"
    EDGE = "edge"
    LOCAL = "local"


#: libpq's ``sslmode`` values (asyncpg and psycopg take the same).
PostgresSslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

#: Secrets that may also be given as a file (``<NAME>_FILE``, the Docker secrets convention).
SECRET_FIELDS: tuple[str, ...] = (
    "postgres_password",
    "database_url",
    "migrate_database_url",
    "postgres_migrate_password",
    "redis_password",
    "redis_url",
    "qdrant_api_key",
    "openai_api_key",
    "api_key",
    "read_api_key",
)


def _lookup(values: dict[str, Any], name: str) -> Any:
    """``values[name]`` whatever its case (environment names are upper case, fields lower case)."""
    for key, value in values.items():
        if str(key).lower() == name:
            return value
    return None


def read_secret_file(path: Path, *, name: str) -> str:
    """A secret file's content without the trailing newline editors and ``echo`` add."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        # the path is not secret; the content never appears in a message
        raise ValueError(f"{name}: cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    return text.removesuffix("\n").removesuffix("\r")


#: Shortest ``API_KEY`` accepted: an empty or guessable key would open ``/sync`` and ``/retry``.
MIN_API_KEY_CHARS = 16

DEFAULT_TEXT_TEMPLATE = "{title}\n연식: {year}년\n가격: {price}원\n주행거리: {mileage}km\n\n{content}"


class Settings(BaseSettings):
    """Every setting of the service. See docs/configuration.md for the reference table."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, populate_by_name=True
    )

    # PostgreSQL
    postgres_host: str = "127.0.0.1"
    postgres_port: int = Field(5432, ge=1, le=65535)
    postgres_user: str = "postgres"
    postgres_password: SecretStr = SecretStr("")
    postgres_db: str = "finally"
    database_url: SecretStr | None = None
    db_pool_min: int = Field(1, ge=0)
    db_pool_max: int = Field(10, ge=1)
    db_pool_acquire_timeout_s: float = Field(30.0, gt=0)
    #: Schema for the service's tables (``search_path`` = this schema, then ``public``); tests use one each.
    postgres_schema: str | None = None

    # Redis
    redis_host: str = "127.0.0.1"
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_password: SecretStr | None = None
    redis_url: SecretStr | None = None

    # Qdrant
    vector_store: VectorStoreKind = VectorStoreKind.EDGE
    qdrant_host: str = "127.0.0.1"
    qdrant_port: int = Field(6333, ge=1, le=65535)
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_path: Path = Path("var/qdrant")
    collection: str = c.COLLECTION
    #: Whole seconds: qdrant-client rounds a fractional timeout up.
    qdrant_timeout_s: int = Field(10, ge=1)

    # Embeddings
    embedder: EmbedderKind = EmbedderKind.AUTO
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    embedding_model: str = c.OPENAI_MODEL
    vector_size: int = Field(c.VECTOR_SIZE, ge=1, le=65536)
    embedding_max_input_tokens: int = Field(c.OPENAI_MAX_TOKENS_PER_INPUT, ge=16)
    #: The most requests in flight per worker process; the adaptive limiter moves below it.
    embedding_concurrency: int = Field(8, ge=1, le=64)
    #: The key's limits for the model (0 = learn them from the API's ``x-ratelimit-*`` headers).
    embedding_tpm: int = Field(0, ge=0)
    embedding_rpm: int = Field(0, ge=0)
    #: Seconds of budget that may be spent ahead of the steady pace (GCRA tolerance): it absorbs
    #: gaps between requests; keep it no larger than the provider's own tolerance.
    embedding_burst_s: float = Field(5.0, gt=0, le=60)
    text_template: str = DEFAULT_TEXT_TEMPLATE

    # Cost accounting and the live console
    #: US dollars per 1M input tokens, per model (JSON object); replaces the published default table.
    embedding_prices: dict[str, float] = dict(c.EMBEDDING_USD_PER_MILLION_TOKENS)
    #: The live progress display of ``up`` and ``worker``: ``auto`` shows it when stdout is a
    #: terminal and logs are not JSON.
    console: Literal["auto", "on", "off"] = "auto"

    # Streams and keys
    legacy_list: str = c.LEGACY_LIST
    jobs_stream: str = c.JOBS_STREAM
    batch_stream: str = c.BATCH_STREAM
    events_stream: str = c.EVENTS_STREAM
    dead_letter_stream: str = c.DEAD_LETTER_STREAM
    batch_size: int = Field(c.DEFAULT_BATCH_SIZE, ge=1, le=2048)
    reclaim_idle_ms: int = Field(c.DEFAULT_RECLAIM_IDLE_MS, ge=100)
    max_deliveries: int = Field(c.DEFAULT_MAX_DELIVERIES, ge=1)
    #: Batches a worker holds at once (unset: see :meth:`batches_in_flight`).
    worker_concurrency: int | None = Field(None, ge=1, le=64)
    consumer_name: str | None = None
    stream_retention_s: int = Field(86_400, ge=0)
    tombstone_retention_s: int = Field(7 * 86_400, ge=0)
    failure_retention_s: int = Field(30 * 86_400, ge=0)
    job_retention_s: int = Field(30 * 86_400, ge=0)
    handler_max_s: float = Field(900.0, gt=0)
    db_command_timeout_s: float = Field(60.0, gt=0)
    work_max_age_s: int = Field(86_400, ge=60)
    breaker_failures: int = Field(5, ge=1)
    breaker_open_s: float = Field(30.0, gt=0)
    #: 4 MiB: a job of 100,000 ids (the most a job may name) is up to ~2.1 MB of JSON with
    #: 19-digit ids, and must fit (with its extras) under the cap.
    legacy_payload_max_bytes: int = Field(4 * 1024 * 1024, ge=1024)

    # Audit
    audit_interval_s: int = Field(3_600, ge=0)
    audit_keep_reports: int = Field(100, ge=1)
    #: Seconds a generation replaced by a reindex is kept (and still written) for ``rollback``
    #: before housekeeping drops it.
    reindex_keep_s: int = Field(86_400, ge=0)

    # HTTP
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    metrics_port: int = Field(0, ge=0, le=65535)

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "console", "json"] = "auto"

    # --- Least privilege, TLS and secrets read from files (docs/operations.md, "Hardening") ---
    #: The migrations' own connection (a role that owns the service's schema); the service's
    #: connection (``DATABASE_URL`` / ``POSTGRES_USER``) then needs no DDL privilege at all.
    migrate_database_url: SecretStr | None = None
    postgres_migrate_user: str | None = None
    postgres_migrate_password: SecretStr | None = None
    #: libpq's ``sslmode``; ``verify-full`` checks the server certificate against
    #: ``POSTGRES_SSLROOTCERT`` and its name against the host. Applies to both connections.
    postgres_sslmode: PostgresSslMode | None = None
    postgres_sslrootcert: Path | None = None
    postgres_sslcert: Path | None = None
    postgres_sslkey: Path | None = None
    #: The Redis ACL user (``REDIS_PASSWORD`` is then its password); see ``check-config``.
    redis_username: str | None = None
    #: TLS to Redis when building the URL from host and port (a ``rediss://`` ``REDIS_URL`` is TLS too).
    redis_tls: bool = False
    redis_ssl_ca_certs: Path | None = None
    redis_ssl_certfile: Path | None = None
    redis_ssl_keyfile: Path | None = None
    #: A key for the read-only endpoints (``/status``, ``/failures``, ``/jobs``, ``/listings``,
    #: ``/audit``, the dashboard); ``API_KEY`` is accepted there as well. Unset: they are open.
    read_api_key: SecretStr | None = None
    #: Failed authentications a client may make per minute before it gets 429 Too Many Requests.
    auth_failures_per_minute: int = Field(10, ge=1)
    #: Docker-secrets style: each secret may be read from a file instead (``<NAME>_FILE``); the
    #: file's content, without a trailing newline, is the value. Setting both is an error.
    postgres_password_file: Path | None = None
    database_url_file: Path | None = None
    migrate_database_url_file: Path | None = None
    postgres_migrate_password_file: Path | None = None
    redis_password_file: Path | None = None
    redis_url_file: Path | None = None
    qdrant_api_key_file: Path | None = None
    openai_api_key_file: Path | None = None
    api_key_file: Path | None = None
    read_api_key_file: Path | None = None

    @field_validator("api_key", "read_api_key")
    @classmethod
    def _check_api_key(cls, key: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """A key set but empty or short would let anyone (or any guess) through the guard."""
        if key is not None and len(key.get_secret_value()) < MIN_API_KEY_CHARS:
            raise ValueError(
                f"{str(info.field_name).upper()} is set but "
                f"{'empty' if not key.get_secret_value() else 'too short'}: "
                f"give at least {MIN_API_KEY_CHARS} characters, or unset it (mutating routes are then "
                "loopback-only)"
            )
        return key

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        """``<NAME>_FILE`` fills ``<NAME>`` from the file (Docker secrets), before validation."""
        if not isinstance(data, dict):
            return data
        values = dict(data)
        for name in SECRET_FIELDS:
            given = _lookup(values, f"{name}_file")
            if given is None or given == "":
                continue
            if _lookup(values, name) not in (None, ""):
                raise ValueError(f"{name.upper()} and {name.upper()}_FILE are both set: keep one")
            values[name] = read_secret_file(Path(str(given)), name=f"{name.upper()}_FILE")
        return values

    @field_validator("embedding_prices")
    @classmethod
    def _check_prices(cls, prices: dict[str, float]) -> dict[str, float]:
        if any(price < 0 for price in prices.values()):
            raise ValueError("EMBEDDING_PRICES: a price per 1M tokens cannot be negative")
        return prices

    @model_validator(mode="after")
    def _check_template(self) -> Settings:
        try:
            self.text_template.format(title="", year="", price="", mileage="", content="", brand="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"TEXT_TEMPLATE: unknown placeholder {exc}; allowed: "
                "{title} {year} {price} {mileage} {content} {brand}"
            ) from exc
        return self

    # --- derived values ---------------------------------------------------------------------
    def postgres_dsn(self) -> str:
        """The PostgreSQL DSN: ``DATABASE_URL`` if set, else built from the ``POSTGRES_*`` parts."""
        return self._postgres_dsn(self.database_url, self.postgres_user, self.postgres_password)

    def migrate_dsn(self) -> str:
        """The migrations' DSN: ``MIGRATE_DATABASE_URL``, else ``POSTGRES_MIGRATE_USER`` on the
        ``POSTGRES_*`` host, else the service's own DSN (one role for both, as in development)."""
        if self.migrate_database_url is None and self.postgres_migrate_user is None:
            return self.postgres_dsn()
        return self._postgres_dsn(
            self.migrate_database_url,
            self.postgres_migrate_user or "",
            self.postgres_migrate_password or SecretStr(""),
        )

    def _postgres_dsn(self, url: SecretStr | None, user: str, secret: SecretStr) -> str:
        """``url`` (asyncpg's scheme made libpq's) if set, else ``user`` and ``secret`` on the
        ``POSTGRES_*`` host; with the TLS settings either way."""
        if url is not None:
            dsn = url.get_secret_value().replace("postgresql+asyncpg://", "postgresql://")
        else:
            auth = quote(user, safe="")
            if password := secret.get_secret_value():
                auth += ":" + quote(password, safe="")
            dsn = f"postgresql://{auth}@{self.postgres_host}:{self.postgres_port}/{self.postgres_db}"
        return self._with_postgres_tls(dsn)

    def _with_postgres_tls(self, dsn: str) -> str:
        """``dsn`` with the ``POSTGRES_SSL*`` settings as query parameters (libpq, psycopg and
        asyncpg all read them there); parameters the DSN already has are kept."""
        extra = {
            "sslmode": self.postgres_sslmode,
            "sslrootcert": self.postgres_sslrootcert,
            "sslcert": self.postgres_sslcert,
            "sslkey": self.postgres_sslkey,
        }
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        for key, value in extra.items():
            if value is not None and key not in query:
                query[key] = str(value)
        return urlunsplit(parts._replace(query=urlencode(query, safe="/")))

    def redis_dsn(self) -> str:
        """The Redis URL: ``REDIS_URL`` if set, else built from ``REDIS_HOST``/``REDIS_PORT``
        (with ``REDIS_USERNAME``/``REDIS_PASSWORD``, and ``rediss://`` when ``REDIS_TLS``)."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        auth = quote(self.redis_username, safe="") if self.redis_username else ""
        if self.redis_password is not None:
            auth += ":" + quote(self.redis_password.get_secret_value(), safe="")
        scheme = "rediss" if self.redis_tls else "redis"
        return f"{scheme}://{auth + '@' if auth else ''}{self.redis_host}:{self.redis_port}/0"

    def redis_tls_options(self) -> dict[str, Any]:
        """redis-py's TLS options from the ``REDIS_SSL_*`` settings (used with a ``rediss://`` URL)."""
        options = {
            "ssl_ca_certs": self.redis_ssl_ca_certs,
            "ssl_certfile": self.redis_ssl_certfile,
            "ssl_keyfile": self.redis_ssl_keyfile,
        }
        if not self.redis_dsn().startswith("rediss://"):
            return {}
        return {key: str(value) for key, value in options.items() if value is not None}

    def qdrant_location(self) -> str:
        """The Qdrant server URL: ``QDRANT_URL`` if set, else ``http://QDRANT_HOST:QDRANT_PORT``."""
        return self.qdrant_url or f"http://{self.qdrant_host}:{self.qdrant_port}"

    def resolved_embedder(self) -> EmbedderKind:
        """``auto`` resolved: OpenAI when ``OPENAI_API_KEY`` is set, the offline embedder otherwise."""
        if self.embedder is EmbedderKind.AUTO:
            return EmbedderKind.OPENAI if self.openai_api_key else EmbedderKind.HASHING
        return self.embedder

    def as_environment(self) -> dict[str, str]:
        """These settings as the environment of a child process (secrets in clear, unset ones left out)."""
        env: dict[str, str] = {}
        for name, raw in self:
            # a secret read from a file is passed on as its value: NAME and NAME_FILE never both
            if raw is None or (name.endswith("_file") and name.removesuffix("_file") in SECRET_FIELDS):
                continue
            value = raw.get_secret_value() if isinstance(raw, SecretStr) else raw
            if isinstance(value, dict):  # read back as JSON, like any complex setting
                env[name.upper()] = json.dumps(value)
            else:
                env[name.upper()] = value.value if isinstance(value, StrEnum) else str(value)
        return env

    def usd_per_million_tokens(self, model: str) -> float:
        """The price of ``model`` from ``EMBEDDING_PRICES`` (0 for a model the table does not name)."""
        return self.embedding_prices.get(model, 0.0)

    def batches_in_flight(self) -> int:
        """``WORKER_CONCURRENCY``, or unset: 32 with the OpenAI embedder (their texts share packed
        requests, so it is a ceiling: the shared rate budget and the adaptive limiter set the pace),
        2 with the offline one (CPU-bound in the worker's own process: more would only contend)."""
        if self.worker_concurrency is not None:
            return self.worker_concurrency
        return 32 if self.resolved_embedder() is EmbedderKind.OPENAI else 2

    def model_name(self) -> str:
        """The name of the model the configured embedder writes into every point's payload."""
        return c.HASHING_MODEL if self.resolved_embedder() is EmbedderKind.HASHING else self.embedding_model


def load_settings(**overrides: object) -> Settings:
    """Parse the environment once; turn validation errors into one message naming each variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None
    except SettingsError as exc:  # a JSON setting (EMBEDDING_PRICES) that is not JSON
        raise ConfigurationError(f"invalid configuration:\n  {exc}: give a JSON object") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad variable: its environment name, the value given and the form expected."""
    lines = ["invalid configuration:"]
    for err in exc.errors():
        name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
        value = err.get("input")
        # a model-level error's input is every setting at once, secrets included
        hidden = not err["loc"] or any(s in name for s in ("PASSWORD", "KEY", "URL", "FILE"))
        shown = "<hidden>" if hidden else repr(value)
        lines.append(f"  {name}={shown}: {err['msg']}")
    return "\n".join(lines)
