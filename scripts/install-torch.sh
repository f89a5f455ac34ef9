#!/usr/bin/env bash
# Install the pinned torch into the virtual environment VENV (scripts/setup.sh and scripts/lock.sh call this).
#   bash scripts/install-torch.sh VENV
# The CPU build comes from PyTorch's CPU wheel index when that answers within TORCH_INDEX_TIMEOUT seconds (default 5):
# pip's default index gives Linux the CUDA build, with several GB of GPU libraries. When the index does not answer,
# torch comes from pip's default index (and any find-links of pip's configuration), and this says so on stderr.
#   TORCH_INDEX_URL      the CPU wheel index (default https://download.pytorch.org/whl/cpu)
#   TORCH_INDEX_TIMEOUT  seconds to wait for it (default 5)
set -euo pipefail
if [ "$#" -ne 1 ]; then
  echo "install-torch.sh: give the virtual environment, e.g. bash scripts/install-torch.sh .venv" >&2
  exit 2
fi
venv=$1
torch="torch==2.13.0"
index=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
timeout=${TORCH_INDEX_TIMEOUT:-5}
# One HEAD request for the index's torch page: any HTTP answer under 400 within the timeout counts as reachable.
if "$venv/bin/python" - "$index" "$timeout" <<'EOF' 2>/dev/null; then
import sys
import urllib.request

url, timeout = sys.argv[1].rstrip("/") + "/torch/", float(sys.argv[2])
with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as answer:
    sys.exit(0 if answer.status < 400 else 1)
EOF
  "$venv/bin/pip" install --quiet --index-url "$index" "$torch"
else
  echo "install-torch.sh: PyTorch's CPU wheel index ($index) did not answer within ${timeout} s: installing $torch" \
    "from pip's default index instead. On Linux that is the CUDA build (several GB) unless pip's configuration" \
    "offers a CPU wheel (find-links); set TORCH_INDEX_URL to a CPU index you can reach to avoid it." >&2
  "$venv/bin/pip" install --quiet "$torch"
fi
