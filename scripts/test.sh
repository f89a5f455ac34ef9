#!/usr/bin/env bash
# Set up .venv if needed (the locked versions of constraints.txt), then run the linters and the whole test suite
# (CPU, offline). `--latest` first: the same against the newest versions pyproject.toml allows, in .venv-latest.
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
if [ "${1:-}" = "--latest" ]; then
  shift
  venv=.venv-latest
  bash scripts/setup.sh --latest
else
  bash scripts/setup.sh
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/python" -m pytest -q "$@"
