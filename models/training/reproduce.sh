#!/usr/bin/env bash
# End to end: synthetic data (TypeScript) -> training -> evaluation -> ONNX export (PyTorch, CPU).
#
#   bash models/training/reproduce.sh
#
# Environment knobs:
#   STEPS=2000       optimizer steps (about 40 min at ~1.2 s a step on a quiet 2-core machine)
#   MINUTES=0        optional time cap: with MINUTES>0 the LR schedule also completes within it
#                    (progress = max(step/STEPS, elapsed/MINUTES)), at the cost of determinism
#   SKIP_DATA=1      reuse models/.work/data instead of rebuilding it
#   OUT=dir          model folder to export into (default models/stagebeam-tiny)
# Needs: node + npm deps (npm ci), /usr/bin/python3 with python3-torch, python3-onnx, python3-numpy,
# libopenblas0-pthread (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
MINUTES="${MINUTES:-0}"
STEPS="${STEPS:-2000}"
OUT="${OUT:-models/stagebeam-tiny}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

start=$(date +%s)
if [ "${SKIP_DATA:-0}" != "1" ]; then
  npm run model:data
fi
test -f models/.work/data/meta.json || { echo "models/.work/data/meta.json missing (npm run model:data)" >&2; exit 1; }

train_args=(--minutes "$MINUTES" --steps "$STEPS")
"$PY" models/training/train.py "${train_args[@]}" 2>&1 | tee models/.work/train.out
"$PY" models/training/evaluate.py
"$PY" models/training/export.py --out "$OUT"
echo "reproduce.sh: done in $(( ($(date +%s) - start) / 60 )) min; metrics in models/.work/metrics.json, model in $OUT"
