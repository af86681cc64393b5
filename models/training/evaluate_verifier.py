"""Evaluate the process verifier on the held-out pairs of models/.work/verifier-data (PyTorch).

    python3 models/training/evaluate_verifier.py [--checkpoint models/.work/verifier-checkpoint.pt]

The held-out pairs are the policy judge's held-out pairs (the `judge:<STAGE>` lines of the
policy's heldout split, 4,000 images, seed 2000). Every candidate is scored pointwise, as the
engine scores it: one pass over the whole sequence, P(good) = softmax of the good and bad logits
at each step marker, pooled over the steps. Reported per stage:

* step accuracy (P(good) > 0.5 against the step's label) and AUC of the step scores;
* pair accuracy for each pooling rule (`min`, `mean`, `last`, as shared/core/verifier/pool.ts):
  the pair is right when the right candidate's pooled score is strictly higher;
* CAPTION pairs split by the wrong caption's mistake (absent object, fewer/more objects).

Writes models/.work/verifier-metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import DEFAULT_WORK, load_images, load_lines, load_meta  # noqa: E402
from model import load_checkpoint  # noqa: E402
from train_verifier import DEFAULT_CHECKPOINT, DEFAULT_VERIFIER_DATA, step_scores  # noqa: E402

STAGES = ["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]
POOLS = {"min": min, "mean": lambda s: sum(s) / len(s), "last": lambda s: s[-1]}


def auc(scores, labels) -> float | None:
    """Probability that a good step outscores a bad one (ties count half), by ranks."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = s.argsort(kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i: j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def metrics(lines, scores) -> dict:
    by_stage = {}
    for stage in STAGES:
        idx = [i for i, l in enumerate(lines) if l["stage"] == stage]
        if not idx:
            continue
        ys = [y for i in idx for y in lines[i]["labels"]]
        ps = [p for i in idx for p in scores[i]]
        pairs = defaultdict(dict)
        for i in idx:
            pairs[lines[i]["pair"]][lines[i]["role"]] = i
        complete = [(v["good"], v["bad"]) for v in pairs.values() if "good" in v and "bad" in v]
        pair_acc = {}
        for name, pool in POOLS.items():
            right = sum(pool(scores[g]) > pool(scores[b]) for g, b in complete)
            pair_acc[name] = right / len(complete)
        rec = {
            "steps": len(ys),
            "bad_steps": int(len(ys) - sum(ys)),
            "step_accuracy": float(np.mean([(p > 0.5) == bool(y) for p, y in zip(ps, ys)])),
            "auc": auc(ps, ys),
            "pairs": len(complete),
            "pair_accuracy": pair_acc,
            "candidate_accuracy_min": float(np.mean(
                [(min(scores[i]) > 0.5) == (lines[i]["role"] == "good") for i in idx])),
        }
        if stage == "CAPTION":
            split = defaultdict(list)
            for g, b in complete:
                split[lines[b].get("mistake", "other")].append(min(scores[g]) > min(scores[b]))
            rec["pair_accuracy_min_by_mistake"] = {k: {"pairs": len(v), "accuracy": sum(v) / len(v)}
                                                   for k, v in sorted(split.items())}
        by_stage[stage] = rec
    return by_stage


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    ap.add_argument("--data", default=DEFAULT_VERIFIER_DATA)
    ap.add_argument("--out", default=os.path.join(DEFAULT_WORK, "verifier-metrics.json"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    meta = load_meta(args.data)
    lines = load_lines(args.data, "heldout")
    images = np.ascontiguousarray(load_images(args.data, "heldout", meta))
    model, ck = load_checkpoint(args.checkpoint)
    device = torch.device(args.device)
    model.to(device)
    t0 = time.time()
    scores = step_scores(model, lines, images, meta, device)
    result = {"checkpoint": args.checkpoint, "step": ck.get("step"), "heldout_lines": len(lines),
              "seconds": round(time.time() - t0, 1), "stages": metrics(lines, scores)}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print("| stage | steps (bad) | step accuracy | AUC | pairs | pair acc. min / mean / last |")
    print("|---|---|---|---|---|---|")
    for stage, r in result["stages"].items():
        pa = r["pair_accuracy"]
        print(f"| {stage} | {r['steps']} ({r['bad_steps']}) | {r['step_accuracy']:.1%} | {r['auc']:.3f} | {r['pairs']} | "
              f"{pa['min']:.1%} / {pa['mean']:.1%} / {pa['last']:.1%} |")
    if "CAPTION" in result["stages"]:
        print("CAPTION pairs by mistake (min):", json.dumps(result["stages"]["CAPTION"]["pair_accuracy_min_by_mistake"]))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
