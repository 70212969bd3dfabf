#!/usr/bin/env bash
# Installs what is missing (see bootstrap.sh), then runs the test suite (slow tests excluded).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q "$@"
