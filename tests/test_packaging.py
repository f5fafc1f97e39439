"""The package installs and imports the way the design requires (``http/`` never shadows ``http``)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_standard_http_package_is_not_shadowed_from_the_repo_root() -> None:
    # the repo root first on sys.path, as with `python -c`, `python -m` and uvicorn --app-dir .
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import http.client, uvicorn, httpx, finally_indexer.http; print(http.client.__file__)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not done.stdout.strip().startswith(str(ROOT))


def test_http_folder_has_no_init() -> None:
    assert not (ROOT / "http" / "__init__.py").exists()


@pytest.mark.slow
def test_the_wheel_carries_sql_migrations_and_templates(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("finally_indexer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    def expect(folder: str, pattern: str) -> None:
        wanted = {f"finally_indexer/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / folder).glob(pattern)}
        assert wanted, f"nothing matches {folder}/{pattern} in the repo"
        assert wanted <= names, sorted(wanted - names)

    expect("db/sql", "*.sql")
    expect("db", "alembic.ini")
    expect("db/migrations", "*.py")
    expect("db/migrations", "script.py.mako")
    expect("db/migrations/versions", "*.py")
    expect("http/templates", "*")
    for package in ("core", "processor", "http", "schemas", "db", "devenv"):
        assert f"finally_indexer/{package}/py.typed" in names
    assert "finally_indexer/core/cli.py" in names
    assert not any(n.startswith(("http/", "tests/", "finally_indexer/http/__init__")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "finally-indexer = finally_indexer.core.cli:main"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
