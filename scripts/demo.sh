#!/usr/bin/env bash
# The main job on its embedded default: set up .venv if needed, then run the whole study workflow offline
# (sweep every registered score over 2 seeds on the bundled task with real MiniLM weights, then the report).
# About 5 minutes on 2 CPU cores (benchmarks/README.md). Extra arguments go to `adalora-scores demo` (e.g. --output DIR
# --seeds 1,2,3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/adalora-scores demo "$@"
