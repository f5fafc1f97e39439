#!/usr/bin/env bash
# README command 1: everything on this machine (embedded Redis + PostgreSQL, demo data, all roles).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/finally-indexer up "$@"
