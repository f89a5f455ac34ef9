#!/usr/bin/env bash
# Set up .venv if needed, then run the main job on its embedded default (offline, a few minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/adalora-scores quickstart "$@"
