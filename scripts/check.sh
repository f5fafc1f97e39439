#!/usr/bin/env bash
# The quality gate, the same on a laptop and in CI: lint, format, types, tests.
# Every step runs; the script fails if any of them failed (exit 1; pytest last, so its summary line
# ends the output). Extra arguments go to pytest.
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
step "mypy (strict)" mypy processor http schemas db core devenv scripts/gen_config_doc.py
# tests: pytest puts tests/ on sys.path (so `fakes.*` imports work); untyped test functions are fine
step "mypy (tests, relaxed)" env MYPYPATH=tests mypy --explicit-package-bases --allow-untyped-defs \
    --allow-incomplete-defs --allow-untyped-calls --allow-untyped-decorators --no-warn-return-any tests
# The static checks' verdict comes before the tests, so that the output ends with pytest's own
# summary line; the exit status covers every step.
if ((${#failed[@]})); then
    printf '\nstatic checks FAILED: %s\n' "${failed[*]}"
else
    printf '\nstatic checks passed\n'
fi
step "pytest" pytest "$@"
((${#failed[@]} == 0))
