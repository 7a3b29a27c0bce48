#!/usr/bin/env bash
# Set up (scripts/setup.sh test) and run the whole test suite. Exits non-zero when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# The browser tests drive Debian's Chromium (browsers cannot be downloaded by test tools here).
if [ ! -x /usr/bin/chromium ] && [ -z "${SEARCHER_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
# --ocr's tests run Tesseract (Debian's tesseract-ocr); without it they are skipped.
if ! command -v tesseract >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr >/dev/null; } \
      || echo "tesseract-ocr could not be installed: the OCR test skips"
  else
    { sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr >/dev/null; } \
      || echo "tesseract-ocr could not be installed: the OCR test skips"
  fi
fi
# shellcheck disable=SC1091
. "${VENV:-.venv}/bin/activate"
python -m pytest -q "$@"
