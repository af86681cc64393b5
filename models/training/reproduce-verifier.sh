#!/usr/bin/env bash
# The process verifier models/stagebeam-tiny-prm end to end: data (TypeScript) -> training ->
# evaluation on the policy judge's held-out pairs -> ONNX export (PyTorch, CPU).
#
#   bash models/training/reproduce-verifier.sh
#
# Environment knobs:
#   STEPS=3000     optimizer steps at most
#   MINUTES=42     time cap: the LR schedule completes within it (progress = max(step/STEPS,
#                  elapsed/MINUTES)), so on a busy machine fewer steps run; MINUTES=0 for a run
#                  that depends only on data and seed
#   SKIP_DATA=1    reuse models/.work/verifier-data instead of rebuilding it
#   TRAIN_ARGS=…   more train_verifier.py options, e.g. --object-tokens (the verifier's own object
#                  reading, README-training.md)
# The verifier starts from the bundled policy's weights (models/stagebeam-tiny), read from its ONNX files.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

start=$(date +%s)
if [ "${SKIP_DATA:-0}" != "1" ]; then
  npm run verifier:data
fi
test -f models/.work/verifier-data/meta.json || { echo "models/.work/verifier-data/meta.json missing (npm run verifier:data)" >&2; exit 1; }
# shellcheck disable=SC2086
"$PY" models/training/train_verifier.py --steps "${STEPS:-3000}" --minutes "${MINUTES:-42}" ${TRAIN_ARGS:-} 2>&1 | tee models/.work/verifier-train.out
"$PY" models/training/evaluate_verifier.py
"$PY" models/training/export_verifier.py
echo "reproduce-verifier.sh: done in $(( ($(date +%s) - start) / 60 )) min; metrics in models/.work/verifier-metrics.json"
