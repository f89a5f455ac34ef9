#!/usr/bin/env bash
# Create (or reuse) .venv and install adalora-scores with its test tools, CPU torch first. Idempotent.
# The versions are those of constraints.txt, the exact set the test suite passed with, so every clone gets what CI
# tested (re-lock with scripts/lock.sh). `--latest` instead installs the newest versions pyproject.toml's ranges
# allow, into .venv-latest (scripts/test.sh --latest runs the suite against them).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
venv=.venv
pins=(--constraint constraints.txt)
if [ "${1:-}" = "--latest" ]; then
  venv=.venv-latest
  pins=(--upgrade --upgrade-strategy eager)
elif [ -n "${1:-}" ]; then
  echo "setup.sh: unknown argument '$1' (the only one is --latest)" >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  "$PYTHON" -m venv "$venv"
fi
# The CPU build of torch must come first: an unpinned torch would pull a multi-GB CUDA build. install-torch.sh takes
# it from PyTorch's CPU wheel index when that answers, else from the default index, and says so.
# On a GPU machine, install the CUDA torch you need before running this script; it is kept if it satisfies >=2.5.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  bash scripts/install-torch.sh "$venv"
fi
if [ "$venv" = .venv ]; then
  locked=$(sed -n 's/^# python: //p' constraints.txt)
  have=$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  if [ "$have" != "$locked" ]; then
    echo "setup.sh: constraints.txt was locked with Python $locked, this is $have: installing from pyproject.toml's" \
      "ranges instead (PYTHON=python$locked bash scripts/setup.sh uses the lock)." >&2
    pins=()
  fi
fi
if [ "$venv" = .venv-latest ]; then  # everything newest, but the torch already there (no multi-GB CUDA download)
  keep=$(mktemp)
  trap 'rm -f "$keep"' EXIT
  "$venv/bin/python" -c 'import torch; print(f"torch=={torch.__version__}")' 2>/dev/null > "$keep"
  pins+=(--constraint "$keep")
fi
"$venv/bin/pip" install --quiet "${pins[@]}" -e ".[test,demo]"
