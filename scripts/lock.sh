#!/usr/bin/env bash
# Re-lock constraints.txt: install adalora-scores with its test and demo extras into a fresh virtual environment at
# the newest versions pyproject.toml's ranges allow, then write those exact versions. Run it, then
# `bash scripts/test.sh` (which now installs what was just locked), and commit constraints.txt if the suite passes.
# torch is left out of the lock: scripts/install-torch.sh pins it and installs the CPU build where PyTorch's CPU index
# answers; setup.sh keeps a CUDA build you installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
"$PYTHON" -m venv "$fresh/venv"
bash scripts/install-torch.sh "$fresh/venv"  # the CPU build from PyTorch's CPU index when it answers (says if not)
"$fresh/venv/bin/pip" install --quiet -e ".[test,demo]"
version=$("$fresh/venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
{
  echo "# The exact versions the test suite passed with (scripts/setup.sh installs with them; torch is pinned in"
  echo "# scripts/install-torch.sh)."
  echo "# Made by scripts/lock.sh on $(date -u +%Y-%m-%d) with Python $version; setup.sh uses it with that Python only."
  echo "# python: $version"
  "$fresh/venv/bin/pip" freeze --exclude-editable | grep -v -i -E '^(torch|nvidia-[a-z0-9_-]+|triton)==' | LC_ALL=C sort -f
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) packages locked with Python $version"
