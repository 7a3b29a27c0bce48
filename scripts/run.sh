#!/usr/bin/env bash
# Set up, build the default index (the Python standard library's docstrings, which every
# Python carries), run a few example searches, then serve the search page on
# http://127.0.0.1:8000. Re-running skips what is already indexed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${VENV:-.venv}/bin/activate"
INDEX="${INDEX:-indexes/default}"
searcher index --python-docs --index "$INDEX"
for q in "read a file line by line" "compress data to a zip archive" "run a function later in another thread"; do
  echo; echo "== searcher search \"$q\" -k 3"
  searcher search "$q" --index "$INDEX" -k 3
done
echo
searcher serve --index "$INDEX" --facets kind,folder --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
