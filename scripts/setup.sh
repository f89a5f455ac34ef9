#!/usr/bin/env bash
# Create (or reuse) .venv and install adalora-scores with its test tools. Idempotent; CPU torch first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The CPU build of torch must come first: an unpinned torch would pull a multi-GB CUDA build.
# On a GPU machine, install the CUDA torch you need before running this script; it is kept if it satisfies >=2.5.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install --quiet "torch==2.13.0"
fi
.venv/bin/pip install --quiet -e ".[test,demo]"
