"""Evaluate a stagebeam-tiny checkpoint on heldout.jsonl (PyTorch).

    python3 models/training/evaluate.py [--checkpoint models/.work/checkpoint.pt] [--n 500]

* greedy accuracy per family on answer lines: decode from ids[:target_start] until eos or
  160 new tokens, take the tokens between <CONCLUSION> and </CONCLUSION>, compare with
  answer_ids;
* format rate: sampling at temperature 0.6, top-p 0.9 on --n-format answer prompts; an output
  is well formed when it is exactly <SUMMARY> x </SUMMARY><CAPTION> x </CAPTION><REASONING> x
  </REASONING><CONCLUSION> x </CONCLUSION><eos>, each x non-empty and free of stage tags
  (and nothing but tags between the stages);
* judge pairwise accuracy per kind: logits of judge_choice_ids "1" vs "2" at the position that
  predicts the last target token before eos; check accuracy the same way with check_ids.

Writes models/.work/metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import defaultdict

import numpy as np

# passive OpenMP waiting: on a shared 2-core machine spinning threads cost ~40% of a step
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import (DEFAULT_DATA, DEFAULT_WORK, candidate_words, caption_mistake, clause_flags,  # noqa: E402
                  load_cells, load_images, load_lines, load_meta, pixel_values_np)
from model import StagebeamTiny, cell_targets, count_params, load_checkpoint  # noqa: E402

STAGES = ["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]


@torch.no_grad()
def generate(model: StagebeamTiny, prompts, pv: torch.Tensor, max_new: int, temperature: float = 0.0,
             top_p: float = 1.0, gen: torch.Generator | None = None):
    """Batched decoding with a KV cache; prompts are left padded (mask + position ids), the
    same way the ONNX runtime side feeds batches of different lengths."""
    cfg = model.cfg
    dev = pv.device
    B = len(prompts)
    L = max(len(p) for p in prompts)
    ids = torch.full((B, L), cfg.pad_token_id, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, L - len(p):] = torch.tensor(p)
        mask[r, L - len(p):] = 1
    ids, mask = ids.to(dev), mask.to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits, past = model(ids, pv, mask, pos)
    last = logits[:, -1]
    nextpos = pos[:, -1] + 1
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    for _ in range(max_new):
        if temperature <= 0:
            nxt = last.argmax(-1)
        else:
            probs = torch.softmax(last / temperature, -1)
            sp, si = probs.sort(-1, descending=True)
            cum = sp.cumsum(-1)
            keep = (cum - sp) < top_p  # smallest set with cumulative mass >= top_p
            sp = sp * keep
            # sampled on the CPU so that a seed gives the same draws on every device
            choice = torch.multinomial((sp / sp.sum(-1, keepdim=True)).cpu(), 1, generator=gen).squeeze(-1).to(dev)
            nxt = si.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
        nxt_list, done_list = nxt.tolist(), done.tolist()
        for r in range(B):
            if not done_list[r]:
                out[r].append(nxt_list[r])
        done |= nxt == cfg.eos_token_id
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones(B, 1, dtype=torch.long, device=dev)], 1)
        emb = model.embed_tokens(nxt.unsqueeze(1))
        logits, past = model.decoder(emb, mask, nextpos.unsqueeze(1), past)
        last = logits[:, -1]
        nextpos = nextpos + 1
    return out


def conclusion(tokens, tags):
    o, c = tags["<CONCLUSION>"], tags["</CONCLUSION>"]
    if o not in tokens:
        return None
    i = tokens.index(o)
    rest = tokens[i + 1:]
    if c not in rest:
        return None
    return rest[: rest.index(c)]


def well_formed(tokens, tags, eos) -> bool:
    tag_ids = set(tags.values())
    j = 0
    for st in STAGES:
        o, c = tags[f"<{st}>"], tags[f"</{st}>"]
        if j >= len(tokens) or tokens[j] != o:
            return False
        j += 1
        start = j
        while j < len(tokens) and tokens[j] not in tag_ids and tokens[j] != eos:
            j += 1
        if j == start or j >= len(tokens) or tokens[j] != c:
            return False
        j += 1
    return j == len(tokens) - 1 and tokens[j] == eos


@torch.no_grad()
def judge_scores(model, lines, images, meta, device, bs=32):
    """For each judge/check line: (kind, pred_label, gold_label, image, margin, located), margin
    being logit(1) - logit(2) (or correct - incorrect). `located` (compare lines, when the model
    has the training-only judge token head): whether the head rates the clause end holding the
    wrong candidate's first mistake above every other clause end of both candidates, i.e.
    whether the mistake is found before the decision token has to pool it; else None."""
    head = model.judge_token_head
    clause_ends = candidate_words(meta).clause_ends if head is not None else None
    c1, c2 = meta["judge_choice_ids"]["1"], meta["judge_choice_ids"]["2"]
    cc, ci = meta["check_ids"]["correct"], meta["check_ids"]["incorrect"]
    res = []
    order = sorted(range(len(lines)), key=lambda i: len(lines[i]["ids"]))
    for s in range(0, len(order), bs):
        chunk = [lines[i] for i in order[s: s + bs]]
        T = max(len(l["ids"]) for l in chunk)
        ids = torch.full((len(chunk), T), meta["pad_id"], dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, l in enumerate(chunk):
            ids[r, : len(l["ids"])] = torch.tensor(l["ids"])
            mask[r, : len(l["ids"])] = 1
        pv = torch.from_numpy(pixel_values_np(images[[l["image"] for l in chunk]], meta)).to(device)
        ids, mask = ids.to(device), mask.to(device)
        emb = model.merge_embeds(ids, pv)
        taps = [] if head is not None else None
        h, _ = model.decoder.hidden(emb, mask, torch.arange(T, device=device).unsqueeze(0).expand(len(chunk), T),
                                    taps=taps)
        mistake_p = head(taps[model.cfg.judge_token_layer - 1]).softmax(-1)[..., 1].cpu() if head is not None else None
        for r, l in enumerate(chunk):
            n = len(l["ids"])
            lg = model.decoder.lm_head(h[r, n - 3]).tolist()  # predicts ids[n-2], the token before eos
            if l["kind"] == "check":
                margin = lg[cc] - lg[ci]
                pred = "correct" if margin >= 0 else "incorrect"
                gold = l.get("label") or ("correct" if l["ids"][n - 2] == cc else "incorrect")
            else:
                margin = lg[c1] - lg[c2]
                pred = "1" if margin >= 0 else "2"
                gold = str(l.get("label") or ("1" if l["ids"][n - 2] == c1 else "2"))
            located = None
            if mistake_p is not None and "wrong" in l:
                flags = clause_flags(l["ids"], l["cands"], l["wrong"], clause_ends)
                mark = next(p for p, f in flags.items() if f == 1)
                others = [float(mistake_p[r, p]) for p, f in flags.items() if f == 0]
                located = float(mistake_p[r, mark]) > max(others, default=0.0)
            res.append((l["kind"], pred, gold, l["image"], margin, located))
    return res


@torch.no_grad()
def cell_accuracy(model, images, cells, meta, device, bs=100):
    """How well the vision grid alone tells what each cell holds: accuracy over all cells
    and over the cells holding an object centre (the training-only cell head)."""
    hit = hit_obj = n_obj = 0
    for s in range(0, len(cells), bs):
        pv = torch.from_numpy(pixel_values_np(images[s: s + bs], meta)).to(device)
        pred = model.cell_head(model.vision.encode(pv)).argmax(-1).cpu()
        gold = cell_targets(torch.from_numpy(cells[s: s + bs].astype(np.int64)), model.cfg)
        hit += int((pred == gold).sum())
        obj = gold != 0
        hit_obj += int((pred == gold)[obj].sum())
        n_obj += int(obj.sum())
    return {"all": hit / cells.size, "object_cells": hit_obj / max(1, n_obj)}


def pair_accuracy(jres):
    """Per kind: pairs judged right when the log-odds of both orders are averaged, as the
    engine's score mode does (held-out pairs come as two lines: good first, good second).
    A tie (pure position bias) counts as wrong."""
    by_pair = defaultdict(dict)
    for kind, _, gold, image, margin, _ in jres:
        if kind != "check":
            by_pair[(kind, image)][gold] = margin
    per_kind = defaultdict(lambda: [0, 0])
    for (kind, _), m in by_pair.items():
        if "1" in m and "2" in m:
            per_kind[kind][0] += int((m["1"] - m["2"]) / 2 > 0)
            per_kind[kind][1] += 1
    return per_kind


def caption_pairs_by_mistake(jres, lines, cells, meta, cfg):
    """pair_accuracy of the CAPTION pairs, grouped by what the wrong candidate gets wrong
    (data.caption_mistake): a presence check and counting are different skills."""
    words = candidate_words(meta)
    token_cells = cell_targets(torch.from_numpy(cells.astype(np.int64)), cfg)
    mistake = {l["image"]: caption_mistake(l["ids"], l["cands"], l["label"], token_cells[l["image"]].tolist(), words)
               for l in lines if l["kind"] == "judge:CAPTION"}
    return pair_accuracy([(mistake[image], pred, gold, image, margin, found)
                          for kind, pred, gold, image, margin, found in jres if kind == "judge:CAPTION"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=os.path.join(DEFAULT_WORK, "checkpoint.pt"))
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--out", default=os.path.join(DEFAULT_WORK, "metrics.json"))
    ap.add_argument("--n", type=int, default=500, help="held-out answer items for greedy accuracy")
    ap.add_argument("--n-format", type=int, default=500, help="held-out answer prompts for the format rate")
    ap.add_argument("--n-judge", type=int, default=0, help="max held-out judge/check lines (0 = all)")
    ap.add_argument("--max-new", type=int, default=160)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    meta = load_meta(args.data)
    tags = meta["stage_tag_ids"]
    eos = int(meta["eos_id"])
    model, ck = load_checkpoint(args.checkpoint)
    model.to(device)
    images = np.ascontiguousarray(load_images(args.data, "heldout", meta))
    lines = load_lines(args.data, "heldout")
    rng = random.Random(args.seed)
    answers = [l for l in lines if l["kind"] == "answer"]
    judges = [l for l in lines if l["kind"] != "answer"]
    t0 = time.time()

    # greedy accuracy
    ans = answers if len(answers) <= args.n else rng.sample(answers, args.n)
    per_fam = defaultdict(lambda: [0, 0])
    greedy_format = 0
    examples = []
    for s in range(0, len(ans), args.batch):
        chunk = ans[s: s + args.batch]
        pv = torch.from_numpy(pixel_values_np(images[[l["image"] for l in chunk]], meta)).to(device)
        outs = generate(model, [l["ids"][: l["target_start"]] for l in chunk], pv, args.max_new)
        for l, o in zip(chunk, outs):
            ok = conclusion(o, tags) == list(l["answer_ids"])
            per_fam[l["family"]][0] += int(ok)
            per_fam[l["family"]][1] += 1
            greedy_format += int(well_formed(o, tags, eos))
            if len(examples) < 5:
                examples.append({"family": l["family"], "output_ids": o, "gold_answer_ids": l["answer_ids"]})
    tot_ok = sum(v[0] for v in per_fam.values())
    tot_n = sum(v[1] for v in per_fam.values())
    print(f"greedy accuracy {tot_ok}/{tot_n} = {tot_ok / max(1, tot_n):.3f} ({time.time() - t0:.0f}s)", flush=True)

    # format rate with sampling
    fmt = answers if len(answers) <= args.n_format else rng.sample(answers, args.n_format)
    gen = torch.Generator().manual_seed(args.seed)
    wf = 0
    sampled_ok = 0
    for s in range(0, len(fmt), args.batch):
        chunk = fmt[s: s + args.batch]
        pv = torch.from_numpy(pixel_values_np(images[[l["image"] for l in chunk]], meta)).to(device)
        outs = generate(model, [l["ids"][: l["target_start"]] for l in chunk], pv, args.max_new,
                        temperature=0.6, top_p=0.9, gen=gen)
        for l, o in zip(chunk, outs):
            wf += int(well_formed(o, tags, eos))
            sampled_ok += int(conclusion(o, tags) == list(l["answer_ids"]))
    print(f"format rate {wf}/{len(fmt)} = {wf / max(1, len(fmt)):.3f} ({time.time() - t0:.0f}s)", flush=True)

    # judge / check
    js = judges if not args.n_judge or len(judges) <= args.n_judge else rng.sample(judges, args.n_judge)
    jres = judge_scores(model, js, images, meta, device)
    per_kind = defaultdict(lambda: [0, 0])
    located = defaultdict(lambda: [0, 0])
    for kind, pred, gold, _, _, found in jres:
        per_kind[kind][0] += int(pred == gold)
        per_kind[kind][1] += 1
        if found is not None:
            located[kind][0] += int(found)
            located[kind][1] += 1
    print(f"judge ({time.time() - t0:.0f}s):", {k: f"{v[0]}/{v[1]}" for k, v in sorted(per_kind.items())}, flush=True)
    per_pair = pair_accuracy(jres)
    print("judge, both orders averaged (the engine's score mode):", {k: f"{v[0]}/{v[1]}" for k, v in sorted(per_pair.items())}, flush=True)
    held_cells = load_cells(args.data, "heldout", meta)
    by_mistake = caption_pairs_by_mistake(jres, js, held_cells, meta, model.cfg)
    print("CAPTION pairs by the wrong candidate's mistake, both orders:",
          {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_mistake.items())}, flush=True)
    if located:
        print("judge token head, first mistake located:", {k: f"{v[0]}/{v[1]}" for k, v in sorted(located.items())}, flush=True)

    cells = None
    if model.cell_head is not None:
        cells = cell_accuracy(model, images, held_cells, meta, device)
        print(f"cell accuracy: {cells}", flush=True)

    metrics = {
        "checkpoint_step": ck.get("step"),
        "params": count_params(model),
        "greedy_accuracy": {"overall": tot_ok / max(1, tot_n), "n": tot_n,
                            "per_family": {k: {"accuracy": v[0] / v[1], "n": v[1]} for k, v in sorted(per_fam.items())}},
        "greedy_format_rate": greedy_format / max(1, tot_n),
        "format_rate": {"rate": wf / max(1, len(fmt)), "n": len(fmt), "temperature": 0.6, "top_p": 0.9},
        "sampled_accuracy": sampled_ok / max(1, len(fmt)),
        "cell_accuracy": cells,
        "judge_accuracy": {k: {"accuracy": v[0] / v[1], "n": v[1]} for k, v in sorted(per_kind.items())},
        "judge_pair_accuracy_both_orders": {k: {"accuracy": v[0] / v[1], "n": v[1]} for k, v in sorted(per_pair.items())},
        "judge_caption_pairs_by_mistake": {k: {"accuracy": v[0] / v[1], "n": v[1]} for k, v in sorted(by_mistake.items())},
        "judge_token_head_mistake_located": {k: {"rate": v[0] / v[1], "n": v[1]} for k, v in sorted(located.items())} or None,
        "examples": examples,
        "eval_seconds": round(time.time() - t0, 1),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(metrics, f, indent=2)
    print(json.dumps({k: v for k, v in metrics.items() if k != "examples"}, indent=2))


if __name__ == "__main__":
    main()
