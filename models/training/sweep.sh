#!/usr/bin/env bash
# Recipe sweep on a GPU machine: ten 2,000-step training runs side by side, each evaluated on
# the held-out set; prints one summary line per recipe (see README-training.md, "Choosing the
# recipe"). The data travels packed, since the GPU machine has no Node to build it:
#
#   here:  tar -czf models/.work/gpu/data.tgz -C models/.work/data .
#   there: bash models/training/sweep.sh            (python3 with torch + CUDA)
#
# Knobs: STEPS (2000), JOB_TIMEOUT seconds per run (430), OUT (models/.work/sweep).
set -u
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
OUT="${OUT:-models/.work/sweep}"
DATA=/tmp/stagebeam-data
RES="$OUT/runs"
mkdir -p "$RES" "$DATA"
tar -xzf models/.work/gpu/data.tgz -C "$DATA" || exit 1
STEPS="${STEPS:-2000}"
run() {
  name=$1; steps=$2; shift 2
  timeout "${JOB_TIMEOUT:-430}" bash -c "python3 models/training/train.py --data $DATA --work /tmp/sweep/$name --device cuda --minutes 0 --steps $steps --eval-every 0 --threads 1 --save-every-min 1000 $* > $RES/$name.train.log 2>&1 && python3 models/training/evaluate.py --checkpoint /tmp/sweep/$name/checkpoint.pt --data $DATA --out $RES/$name.json --device cuda --n 500 --n-format 200 --threads 1 > $RES/$name.eval.log 2>&1" &
}
OLD="--cell-weight 0 --vision-init default --no-patch-norm --token-order row --lr 1.5e-3"
run previous "$STEPS" $OLD
run cell "$STEPS" $OLD --cell-weight 1
run cell_he "$STEPS" $OLD --cell-weight 1 --vision-init he --patch-norm
run cell_col "$STEPS" $OLD --cell-weight 1 --token-order column
run all "$STEPS" --lr 1.5e-3
run all_cw03 "$STEPS" --lr 1.5e-3 --cell-weight 0.3
run all_jw20 "$STEPS" --lr 1.5e-3 --judge-weight 20
run all_lr3 "$STEPS" --lr 3e-3
run shipped "$STEPS"
run shipped_x2 $((STEPS * 2))
wait
python3 - "$RES" <<'PY' | tee "$OUT/summary.txt"
import glob, json, os, sys
for f in sorted(glob.glob(os.path.join(sys.argv[1], '*.json'))):
    m = json.load(open(f))
    judge = {k.replace('judge:', ''): round(v['accuracy'], 3) for k, v in m['judge_accuracy'].items()}
    print(os.path.basename(f)[:-5], 'greedy', round(m['greedy_accuracy']['overall'], 3),
          'format', m['format_rate']['rate'], 'cells', m.get('cell_accuracy'), 'judge', judge)
PY
