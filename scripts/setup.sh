#!/usr/bin/env bash
# Make (or reuse) a virtual environment with searcher installed.
#   scripts/setup.sh            runtime only
#   scripts/setup.sh test       with the test dependencies
# torch goes in first: a bare `torch` requirement with no torch installed pulls a CUDA build
# of several GB. Without an NVIDIA GPU we take the CPU build (torch==2.13.0); with one, the
# default (CUDA) build. The project's own `torch` range is then already met.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
extras="${1:-}"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    python -m pip install -q "torch>=2.1,<=2.14.1"
  else
    python -m pip install -q "torch==2.13.0"
  fi
fi
# The distribution was named `searcher` before `searcher-engine`: a .venv made then holds it.
python -m pip uninstall -y -q searcher >/dev/null 2>&1 || true
target="."
[ -n "$extras" ] && target=".[$extras]"
python -m pip install -q -e "$target"
python -c "import searcher, torch, faiss; print('searcher ready: torch', torch.__version__, '| faiss', faiss.__version__)"
