#!/usr/bin/env bash
# README command 2: install what is missing, then the whole quality gate (scripts/check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec bash scripts/check.sh "$@"
