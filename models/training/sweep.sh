#!/usr/bin/env bash
# Recipe sweep on a GPU machine: every recipe of a recipes file trained side by side, each
# evaluated on the held-out set; prints one summary line per recipe (see README-training.md,
# "Choosing the recipe"). Recipes files (models/training/sweeps/*.recipes) hold one
# "name steps train.py-flags…" line per run. The data travels packed, since the GPU machine has
# no Node to build it:
#
#   here:  tar -czf models/.work/gpu/data.tgz -C models/.work/data .
#   there: bash models/training/sweep.sh models/training/sweeps/<name>.recipes   (python3, torch, CUDA)
#
# Knobs: JOB_TIMEOUT seconds per run (430); MINUTES (0 = off) also ends each run's LR schedule
# within that many minutes, so a crowded GPU still leaves time to evaluate (the log says the
# step reached); OUT (models/.work/sweep).
set -u
cd "$(dirname "$0")/../.."
RECIPES="${1:?usage: sweep.sh RECIPES_FILE}"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
OUT="${OUT:-models/.work/sweep}"
DATA=/tmp/stagebeam-data
RES="$OUT/runs"
mkdir -p "$RES" "$DATA"
tar -xzf models/.work/gpu/data.tgz -C "$DATA" || exit 1
while read -r name steps flags; do
  case "$name" in ''|'#'*) continue ;; esac
  timeout "${JOB_TIMEOUT:-430}" bash -c "python3 models/training/train.py --data $DATA --work /tmp/sweep/$name --device cuda --minutes ${MINUTES:-0} --steps $steps --eval-every 0 --threads 1 --save-every-min 1000 $flags > $RES/$name.train.log 2>&1 && python3 models/training/evaluate.py --checkpoint /tmp/sweep/$name/checkpoint.pt --data $DATA --out $RES/$name.json --device cuda --n 500 --n-format 200 --threads 1 > $RES/$name.eval.log 2>&1" &
done < "$RECIPES"
wait
python3 - "$RES" <<'PY' | tee "$OUT/summary.txt"
import glob, json, os, sys
for f in sorted(glob.glob(os.path.join(sys.argv[1], '*.json'))):
    m = json.load(open(f))
    judge = {k.replace('judge:', ''): round(v['accuracy'], 3) for k, v in m['judge_accuracy'].items()}
    pairs = {k.replace('judge:', ''): round(v['accuracy'], 3) for k, v in m.get('judge_pair_accuracy_both_orders', {}).items()}
    print(os.path.basename(f)[:-5], 'greedy', round(m['greedy_accuracy']['overall'], 3),
          'format', m['format_rate']['rate'], 'cells', m.get('cell_accuracy'), 'judge', judge, 'pairs', pairs,
          'family', {k: round(v['accuracy'], 2) for k, v in m['greedy_accuracy'].get('per_family', {}).items()})
PY
