#!/usr/bin/env bash
# Set up (scripts/setup.sh test) and run the whole test suite. Exits non-zero when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# shellcheck disable=SC1091
. "${VENV:-.venv}/bin/activate"
python -m pytest -q "$@"
