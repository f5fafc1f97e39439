#!/usr/bin/env bash
# Install what is missing, and only that: system servers (as root, with apt), the virtualenv,
# and this package in editable mode. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bootstrap] %s\n' "$*" >&2; }

# --- system packages ------------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing+=(postgresql)
command -v prometheus >/dev/null || missing+=(prometheus)
{ command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } || missing+=(chromium)
# Korean glyphs for the dashboard in headless Chromium (screenshots would show empty boxes)
if command -v dpkg >/dev/null && ! dpkg -s fonts-noto-cjk >/dev/null 2>&1; then missing+=(fonts-noto-cjk); fi
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
        say "missing system packages: ${missing[*]} (install them with your package manager)"
        say "the tests that need them will fail until then"
    fi
fi

# --- Python ----------------------------------------------------------------------------------
pick_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if [[ ! -x .venv/bin/python ]]; then
    python=$(pick_python) || { say "Python >= 3.11 is required"; exit 1; }
    say "creating .venv with $python"
    "$python" -m venv .venv
fi
if ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say ".venv has Python < 3.11: remove it and run again"
    exit 1
fi

# Reinstall when the package is not importable, pyproject.toml changed, or files were added or
# removed: strict editable mode links files one by one, so a new module needs a reinstall.
stamp=.venv/.finally-indexer-files
files=$( (cat pyproject.toml; find core processor http schemas db devenv -type f \
    ! -path '*/__pycache__/*' 2>/dev/null | LC_ALL=C sort) | cksum)
if [[ ! -f $stamp || $(cat "$stamp") != "$files" ]] ||
    ! .venv/bin/python -c 'import finally_indexer.core.cli' 2>/dev/null; then
    say "installing finally-indexer (editable) with its dev dependencies"
    # the packaging test builds a wheel without build isolation: it needs setuptools and wheel here
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -U pip 'setuptools>=69' wheel
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        -e '.[dev]' --config-settings editable_mode=strict
    echo "$files" >"$stamp"
fi
say "ready"
