#!/usr/bin/env bash
# The GPU check, one script: every `cuda` parameter of the suite (MDM_PROPS_REQUIRE_CUDA=1 turns the
# skip of a missing GPU into a failure), then claim C0.5 (CPU vs CUDA, float64) through the command.
# Usage: scripts/cuda_check.sh            (uses .venv/bin/python if present, else python3)
#        PYTHON=/path/to/python scripts/cuda_check.sh   (e.g. a GPU machine's own torch)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export MDM_PROPS_REQUIRE_CUDA=1
export CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"  # deterministic cuBLAS, set before any CUDA call
"$PYTHON" -c 'import sys, torch; ok = torch.cuda.is_available(); print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name() if ok else "NO GPU"); sys.exit(0 if ok else 1)' \
  || { echo "cuda_check: torch.cuda.is_available() is False with $PYTHON" >&2; exit 1; }
start=$(date +%s)
"$PYTHON" -m pytest -n auto -q -k cuda
"$PYTHON" -m mdm_props verify --device cuda --claims C0.5
echo "cuda_check: passed in $(( $(date +%s) - start )) s"
