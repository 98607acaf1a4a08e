#!/usr/bin/env bash
# The GPU check, from a clean checkout on a machine with an NVIDIA GPU (about 5 minutes): install,
# run the CUDA tests, then benchmarks/device_check.py (smoke and proxy trials on cuda in fp32 and
# AMP, a 4-trial search on half a GPU per trial) and print its table. Exits non-zero on any failure.
# A torch that already sees the GPU (a CUDA image) is used as it is; otherwise pip's default torch,
# a CUDA build, is installed into the virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${NASFPN_DEVICE_VENV:-.venv-device}
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  "$PY" -m venv --system-site-packages "$VENV"
else
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q "torch>=2.4,<3"
fi
"$VENV/bin/pip" install -q -e ".[test]"
"$VENV/bin/python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'device check: torch sees no CUDA device')"
export NASFPN_CACHE=${NASFPN_CACHE:-$(mktemp -d)}
"$VENV/bin/python" -m pytest -q -m cuda
"$VENV/bin/python" benchmarks/device_check.py
