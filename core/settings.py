"""The one settings class, parsed once at the entrypoint and passed down by constructor.

Names follow the seed (``POSTGRES_HOST``, ``QDRANT_HOST``, ``REDIS_HOST``, ``OPENAI_API_KEY``,
``VECTOR_SIZE`` …); the URL forms (``DATABASE_URL``, ``REDIS_URL``, ``QDRANT_URL``) win over the
host/port parts when set. Secrets are ``SecretStr`` and never appear in ``repr`` or logs.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    #: 4 MiB: a job of 100,000 ids (the most a job may name) is up to ~2.1 MB of JSON with
    #: 19-digit ids, and must fit (with its extras) under the cap.
    legacy_payload_max_bytes: int = Field(4 * 1024 * 1024, ge=1024)

    # Audit
    audit_interval_s: int = Field(3_600, ge=0)
    audit_keep_reports: int = Field(100, ge=1)

    # HTTP
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    metrics_port: int = Field(0, ge=0, le=65535)

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, key: SecretStr | None) -> SecretStr | None:
        """A key set but empty or short would let anyone (or any guess) through the guard."""
        if key is not None and len(key.get_secret_value()) < MIN_API_KEY_CHARS:
            raise ValueError(
                f"API_KEY is set but {'empty' if not key.get_secret_value() else 'too short'}: "
                f"give at least {MIN_API_KEY_CHARS} characters, or unset it (mutating routes are then "
                "loopback-only)"
            )
        return key

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
        if self.database_url is not None:
            return self.database_url.get_secret_value().replace("postgresql+asyncpg://", "postgresql://")
        password = self.postgres_password.get_secret_value()
        auth = quote(self.postgres_user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.postgres_host}:{self.postgres_port}/{self.postgres_db}"

    def redis_dsn(self) -> str:
        """The Redis URL: ``REDIS_URL`` if set, else built from ``REDIS_HOST``/``REDIS_PORT``."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        auth = ""
        if self.redis_password is not None:
            auth = ":" + quote(self.redis_password.get_secret_value(), safe="") + "@"
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"

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
            if raw is None:
                continue
            value = raw.get_secret_value() if isinstance(raw, SecretStr) else raw
            env[name.upper()] = value.value if isinstance(value, StrEnum) else str(value)
        return env

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


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad variable: its environment name, the value given and the form expected."""
    lines = ["invalid configuration:"]
    for err in exc.errors():
        name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
        value = err.get("input")
        shown = "<hidden>" if any(s in name for s in ("PASSWORD", "KEY", "URL")) else repr(value)
        lines.append(f"  {name}={shown}: {err['msg']}")
    return "\n".join(lines)
