#!/usr/bin/env bash
# The quality gate, the same on a laptop and in CI: lint, format, types, tests.
# Every step runs; the script fails if any of them failed. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
PATH="$PWD/.venv/bin:$PATH"

failed=()
step() {
    local name=$1
    shift
    printf '\n==> %s\n' "$name"
    "$@"
    local rc=$?
    # any non-zero exit fails the gate, including pytest's 5 ("no tests collected"): a gate that
    # ran nothing did not pass
    if ((rc != 0)); then
        failed+=("$name (exit $rc)")
    fi
}

step "ruff check" ruff check .
step "ruff format --check" ruff format --check .
step "mypy (strict)" mypy processor http schemas db core devenv
# tests: pytest puts tests/ on sys.path (so `fakes.*` imports work); untyped test functions are fine
step "mypy (tests, relaxed)" env MYPYPATH=tests mypy --explicit-package-bases --allow-untyped-defs \
    --allow-incomplete-defs --allow-untyped-calls --allow-untyped-decorators --no-warn-return-any tests
step "pytest" pytest "$@"

if ((${#failed[@]})); then
    printf '\nFAILED: %s\n' "${failed[@]}"
    exit 1
fi
printf '\nall checks passed\n'
