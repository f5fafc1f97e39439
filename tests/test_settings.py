"""Settings: invalid values are refused with a message naming the variable; secrets stay hidden."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from finally_indexer.core.cli import main
from finally_indexer.core.errors import ConfigurationError
from finally_indexer.core.settings import SECRET_FIELDS, EmbedderKind, load_settings

CLI = Path(sys.executable).parent / "finally-indexer"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("REDIS_PORT", "abc", "valid integer"),
        ("POSTGRES_PORT", "70000", "less than or equal to 65535"),
        ("VECTOR_SIZE", "0", "greater than or equal to 1"),
        ("LOG_FORMAT", "xml", "'auto', 'console' or 'json'"),
        ("CONSOLE", "maybe", "'auto', 'on' or 'off'"),
        ("LOG_LEVEL", "LOUD", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("VECTOR_STORE", "mongo", "'server', 'edge' or 'local'"),
        ("EMBEDDER", "magic", "'auto', 'openai' or 'hashing'"),
        ("BATCH_SIZE", "-1", "greater than or equal to 1"),
    ],
)
def test_an_invalid_value_names_the_variable_and_the_expected_form(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert f"{name}={value!r}" in message
    assert expected in message


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PORT", "abc")
    monkeypatch.setenv("VECTOR_SIZE", "0")
    with pytest.raises(ConfigurationError, match=r"(?s)REDIS_PORT.*VECTOR_SIZE"):
        load_settings()


def test_an_unknown_template_placeholder_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXT_TEMPLATE", "{title} {colour}")
    with pytest.raises(ConfigurationError, match="TEXT_TEMPLATE"):
        load_settings()


def test_defaults_follow_the_seed() -> None:
    settings = load_settings()
    assert settings.vector_size == 3072
    assert settings.qdrant_port == 6333
    assert settings.legacy_list == "indexing_jobs"
    assert settings.resolved_embedder() is EmbedderKind.HASHING


def test_urls_win_over_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "db")
    monkeypatch.setenv("POSTGRES_PASSWORD", "p@ss word")
    assert load_settings().postgres_dsn() == "postgresql://postgres:p%40ss%20word@db:5432/finally"
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@elsewhere/x")
    assert load_settings().postgres_dsn() == "postgresql://u@elsewhere/x"


def test_the_migrations_dsn_falls_back_from_its_url_to_its_user_to_the_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "db")
    monkeypatch.setenv("POSTGRES_SSLMODE", "verify-full")
    service = "postgresql://postgres@db:5432/finally?sslmode=verify-full"
    assert load_settings().migrate_dsn() == service  # one role for both
    monkeypatch.setenv("POSTGRES_MIGRATE_USER", "owner")
    assert load_settings().migrate_dsn() == "postgresql://owner@db:5432/finally?sslmode=verify-full"
    monkeypatch.setenv("POSTGRES_MIGRATE_PASSWORD", "p@ss")
    assert load_settings().migrate_dsn() == "postgresql://owner:p%40ss@db:5432/finally?sslmode=verify-full"
    monkeypatch.setenv("MIGRATE_DATABASE_URL", "postgresql+asyncpg://m@elsewhere/x")
    assert load_settings().migrate_dsn() == "postgresql://m@elsewhere/x?sslmode=verify-full"
    assert load_settings().postgres_dsn() == service


def test_secrets_never_appear_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "OPENAI_API_KEY": "sk-very-secret",
        "POSTGRES_PASSWORD": "pg-very-secret",
        "REDIS_PASSWORD": "redis-very-secret",
        "API_KEY": "api-very-secret-0123",
        "QDRANT_API_KEY": "qdrant-very-secret",
        "DATABASE_URL": "postgresql://u:dburl-very-secret@h/d",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    shown = repr(settings) + str(settings) + repr(settings.model_dump())
    for value in secrets.values():
        assert value not in shown
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-very-secret"


def test_a_secret_in_an_invalid_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTOR_SIZE", "0")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:dburl-very-secret@h/d")
    with pytest.raises(ConfigurationError) as info:
        load_settings(database_url=12)
    assert "dburl-very-secret" not in str(info.value)
    assert "DATABASE_URL=<hidden>" in str(info.value)


def test_check_config_exits_2_with_the_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "LOG_FORMAT='xml'" in err
    assert "Traceback" not in err


def test_check_config_prints_settings_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "OPENAI_API_KEY=**********" in out
    assert "sk-very-secret" not in out
    assert out.rstrip().endswith("configuration OK")


def test_check_config_prints_no_hash_of_the_redis_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unsalted SHA-256 of a password can be brute-forced offline: it is printed only on request."""
    password = "redis-very-secret"
    digest = hashlib.sha256(password.encode()).hexdigest()
    monkeypatch.setenv("REDIS_PASSWORD", password)
    assert main(["check-config"]) == 0
    shown = capsys.readouterr()
    assert digest not in shown.out + shown.err
    assert password not in shown.out + shown.err
    [line] = [x for x in shown.out.splitlines() if x.startswith("ACL SETUSER")]
    assert " ><password> " in line  # to replace, as the comment above it says
    assert "<password>" in shown.out.split("ACL SETUSER")[0]

    assert main(["check-config", "--acl-password-hash"]) == 0
    asked = capsys.readouterr()
    assert f" #{digest} " in asked.out
    assert "brute-forced" in asked.err  # the warning goes with it
    assert password not in asked.out + asked.err


def test_the_installed_command_exits_2_without_a_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if k != "VECTOR_SIZE"} | {"REDIS_PORT": "abc"}
    done = subprocess.run(
        [CLI, "check-config"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "REDIS_PORT='abc'" in done.stderr
    assert "valid integer" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_env_file_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_file = tmp_path / "x.env"
    env_file.write_text("VECTOR_SIZE=128\nCOLLECTION=from_file\n")
    assert main(["--env-file", str(env_file), "check-config"]) == 0
    out = capsys.readouterr().out
    assert "VECTOR_SIZE=128" in out
    assert "COLLECTION=from_file" in out


@pytest.mark.parametrize(
    "command", ["up", "api", "worker", "sync", "bridge", "migrate", "seed-demo", "dev-schema", "check-config"]
)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: finally-indexer" in capsys.readouterr().out


def test_configuration_doc_and_env_example_are_up_to_date() -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "gen_config_doc.py"
    done = subprocess.run(
        [sys.executable, script, "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_env_templates_are_valid_settings(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    for name in (".env.dev", ".env.prod"):
        assert main(["--env-file", str(root / name), "check-config"]) == 0, name
    out = capsys.readouterr().out
    assert "EMBEDDER=openai" in out
    assert "VECTOR_STORE=server" in out
    assert "LOG_FORMAT=json" in out


@pytest.mark.parametrize("key", ["", "short-key"])
def test_an_empty_or_short_api_key_stops_start_up_naming_it(
    key: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty API_KEY used to equal an empty header: every client could call /sync and /retry."""
    monkeypatch.setenv("API_KEY", key)
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "API_KEY=<hidden>" in err
    assert "at least 16 characters" in err
    assert "Traceback" not in err


def test_an_unset_api_key_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_KEY", raising=False)
    assert load_settings().api_key is None


# --- secrets from files, and never in a configuration error ---------------------------------------
SECRET = "sk-Secret-5d2e8a7c4b1f"


def test_a_model_level_error_does_not_print_the_settings_it_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad TEXT_TEMPLATE used to print every setting given, OPENAI_API_KEY in clear included."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(text_template="{nope}")
    assert "TEXT_TEMPLATE" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_every_secret_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in SECRET_FIELDS:
        path = tmp_path / name
        path.write_text(f"{name}-value-0123456789\n")  # the newline editors add is not part of it
        monkeypatch.setenv(f"{name.upper()}_FILE", str(path))
    settings = load_settings()
    for name in SECRET_FIELDS:
        value = getattr(settings, name)
        assert isinstance(value, SecretStr), name
        assert value.get_secret_value() == f"{name}-value-0123456789", name
    # a child process gets the values, not the files (both at once would be refused)
    env = settings.as_environment()
    assert env["API_KEY"] == "api_key-value-0123456789"
    assert not any(
        key.endswith("_FILE") and key.removesuffix("_FILE").lower() in SECRET_FIELDS for key in env
    )


def test_a_secret_and_its_file_together_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "key").write_text(SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY_FILE", str(tmp_path / "key"))
    with pytest.raises(
        ConfigurationError, match="OPENAI_API_KEY and OPENAI_API_KEY_FILE are both set"
    ) as caught:
        load_settings()
    assert SECRET not in str(caught.value)


def test_an_unreadable_secret_file_names_the_path_not_a_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match=r"API_KEY_FILE: cannot read .*missing"):
        load_settings()


def test_the_file_value_is_checked_like_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "short").write_text("short\n")
    monkeypatch.setenv("API_KEY_FILE", str(tmp_path / "short"))
    with pytest.raises(ConfigurationError, match="API_KEY is set but too short"):
        load_settings()


def test_embedding_prices_are_read_as_json_and_unknown_models_cost_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().usd_per_million_tokens("text-embedding-3-large") == 0.13
    monkeypatch.setenv("EMBEDDING_PRICES", '{"my-model": 0.5}')
    settings = load_settings()
    assert settings.usd_per_million_tokens("my-model") == 0.5
    assert settings.usd_per_million_tokens("text-embedding-3-large") == 0.0
    monkeypatch.setenv("EMBEDDING_PRICES", '{"my-model": -1}')
    with pytest.raises(ConfigurationError, match=r"EMBEDDING_PRICES.*cannot be negative"):
        load_settings()
    monkeypatch.setenv("EMBEDDING_PRICES", "{'my-model': 0.5}")
    with pytest.raises(ConfigurationError, match=r"embedding_prices.*give a JSON object"):
        load_settings()


def test_settings_survive_the_trip_through_a_child_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``as_environment`` is how tests and benchmarks hand settings to worker processes."""
    given = load_settings(
        embedding_prices={"text-embedding-3-large": 0.13, "my-model": 0.5}, api_key=SecretStr("k" * 16),
        batch_size=7, console="off",
    )  # fmt: skip
    for name, value in given.as_environment().items():
        monkeypatch.setenv(name, value)
    assert load_settings() == given
