#!/usr/bin/env bash
# The GPU check: one prepared command that prints one table (benchmarks/gpu_check.py says what it measures).
# Uses the Python already on the machine ($PYTHON, default python3) with the checkout's src/ on the path, needs no
# network and carries nothing large (its GPU time is not yet measured); `--device cpu` shrinks every model (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ -x .venv/bin/python ] && [ -z "${PYTHON_SET:-}" ] && ! "$PYTHON" -c "import peft" 2>/dev/null; then
  PYTHON=.venv/bin/python
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
