#!/usr/bin/env bash
# The GPU check of the speed issue (#22): run on the lent GPU machine from the repository root.
# Installs the project as the README says (offline wheels are not needed: torch comes with the machine
# when present), then runs benchmarks/gpu_check.py, which writes $OUT/gpu_check.json step by step.
set -euo pipefail
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
if ! python -c "import cptbench" 2>/dev/null; then
  python -m pip install -q -e . >"$OUT/pip.log" 2>&1 || { echo "install failed: see $OUT/pip.log"; exit 2; }
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/nvidia-smi.csv" 2>&1 || true
timeout "${GPU_CHECK_SECONDS:-480}" python benchmarks/gpu_check.py --out "$OUT" "$@"
