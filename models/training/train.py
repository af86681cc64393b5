"""Train stagebeam-tiny on models/.work/data (see DATA_FORMAT.md).

    python3 models/training/train.py [--data models/.work/data] [--steps 2000] [--minutes 0] [--device cpu]

AdamW, linear warmup then cosine decay, fixed seeds, length-bucketed batches (right padded
with pad_id; padding is masked in attention and ignored in the loss). Answer, judge and check
lines are mixed as they come in train.jsonl. With --minutes 0 the run is deterministic given
the data; --minutes > 0 also finishes the LR schedule within that time. An auxiliary loss
(--cell-weight) teaches the vision encoder what each 16-px grid cell holds; two experimental
ones (--judge-token-weight, --ground-weight; off by default, see README-training.md) supervise
the judge and where the decoder looks. Loss is logged to models/.work/train_log.json, the
checkpoint written to models/.work/checkpoint.pt (also every --save-every-min minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np

# passive OpenMP waiting: on a shared 2-core machine spinning threads cost ~40% of a step
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import (DEFAULT_DATA, DEFAULT_WORK, CandidateWords, candidate_words, clause_flags, load_cells,  # noqa: E402
                  load_images, load_lines, load_meta, named_objects, pixel_values_np)
from model import ModelConfig, StagebeamTiny, cell_targets, count_params  # noqa: E402


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def oversample(lines, factors, seed: int):
    """Repeat the lines of each KIND=FACTOR kind FACTOR times per epoch (a fractional part keeps
    a seeded random share of one more copy): the judge lines that matter most are otherwise
    seen less than once in a 2,000-step run."""
    rng = random.Random(seed + 2)
    out = list(lines)
    for spec in factors:
        kind, _, factor = spec.partition("=")
        try:
            f = float(factor)
        except ValueError:
            raise SystemExit(f"--oversample {spec!r}: expected KIND=FACTOR, e.g. judge:CAPTION=2")
        if f < 1:
            raise SystemExit(f"--oversample {spec!r}: FACTOR must be >= 1")
        of_kind = [l for l in lines if l["kind"] == kind]
        if not of_kind:
            raise SystemExit(f"--oversample {spec!r}: no train line has kind {kind!r}")
        whole, frac = int(f), f - int(f)
        out += of_kind * (whole - 1) + rng.sample(of_kind, round(frac * len(of_kind)))
    return out


class Batcher:
    """Length-bucketed batches: shuffle, cut into pools of `pool` batches, sort each pool by
    length, split into batches, shuffle the batch order."""

    def __init__(self, lines, batch_size: int, seed: int, pool: int = 64):
        self.lines = lines
        self.bs = batch_size
        self.rng = random.Random(seed)
        self.pool = pool
        self.queue = []

    def _refill(self):
        idx = list(range(len(self.lines)))
        self.rng.shuffle(idx)
        batches = []
        span = self.bs * self.pool
        for s in range(0, len(idx), span):
            chunk = sorted(idx[s: s + span], key=lambda i: len(self.lines[i]["ids"]))
            batches += [chunk[j: j + self.bs] for j in range(0, len(chunk), self.bs)]
        batches = [b for b in batches if len(b) == self.bs] or batches
        self.rng.shuffle(batches)
        self.queue = batches

    def next(self):
        if not self.queue:
            self._refill()
        return [self.lines[i] for i in self.queue.pop()]


def collate(batch, images, meta, key_weight: float, stage_ids: dict, decision_ids: set,
            judge_weight: float | None = None, words: CandidateWords | None = None, token_cells=None):
    """-> input_ids, attention_mask, pixel_values, labels (-100 = no loss), weights, decision
    positions, judge token flags, grounding targets ([N, 2 + T]: row, shape-word position and a
    0/1 mask over the positions it should look at). The last two are filled only when `words`
    and `token_cells` (the image-token order cell labels of the batch's images) are given."""
    pad = int(meta["pad_id"])
    T = max(len(b["ids"]) for b in batch)
    B = len(batch)
    ids = torch.full((B, T), pad, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    weights = torch.zeros((B, T), dtype=torch.float32)
    decision = torch.zeros((B, T), dtype=torch.bool)
    # judge token labels at clause ends (see clause_flags); -100 = no label
    tok_flags = torch.full((B, T), -100, dtype=torch.long)
    c_open, c_close = stage_ids.get("<CONCLUSION>"), stage_ids.get("</CONCLUSION>")
    ground_rows = []
    jw = key_weight if judge_weight is None else judge_weight
    for r, b in enumerate(batch):
        x = b["ids"]
        n = len(x)
        ids[r, :n] = torch.tensor(x)
        mask[r, :n] = 1
        ts = int(b["target_start"])
        # position t-1 predicts ids[t] for t in [ts, n)
        labels[r, ts - 1: n - 1] = torch.tensor(x[ts:n])
        w = torch.ones(n - ts)
        if key_weight != 1.0 or jw != 1.0:
            if b["kind"] == "answer" and c_open is not None:
                inside = False
                for j, tok in enumerate(x[ts:n]):
                    if tok == c_close:
                        inside = False
                    if inside:
                        w[j] = key_weight
                    if tok == c_open:
                        inside = True
            else:
                for j, tok in enumerate(x[ts:n]):
                    if tok in decision_ids:
                        w[j] = jw
        weights[r, ts - 1: n - 1] = w
        if b["kind"] != "answer":
            decision[r, n - 3] = True  # predicts ids[n-2], the decision token before eos
        if words is None:
            continue
        named = named_objects(x, token_cells[r], words)
        if "wrong" in b:
            for p, flag in clause_flags(x, b["cands"], b["wrong"], words.clause_ends).items():
                tok_flags[r, p] = flag
            # a candidate naming an object the image does not hold is wrong right there
            for t, held in named:
                if any(s <= t < e for s, e in b["cands"]):
                    tok_flags[r, t] = int(not held)
        for t, held in named:
            if held:
                look = torch.zeros(T, dtype=torch.long)
                look[held] = 1
                ground_rows.append(torch.cat([torch.tensor([r, t]), look]))
    ground = None
    if words is not None:
        ground = torch.stack(ground_rows) if ground_rows else torch.zeros((0, 2 + T), dtype=torch.long)
    img_idx = [int(b["image"]) for b in batch]
    pv = torch.from_numpy(pixel_values_np(images[img_idx], meta))
    return ids, mask, pv, labels, weights, decision, tok_flags, ground


def batch_loss(model: StagebeamTiny, ids, mask, pv, labels, weights, decision=None, cells=None,
               tok_flags=None, ground=None, cell_weight: float = 0.0, judge_token_weight: float = 0.0,
               ground_weight: float = 0.0):
    """-> (training loss, plain token loss, tokens, decision loss, cell loss, grounding loss)."""
    emb, grid = model.merge_embeds_with_grid(ids, pv)
    pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand_as(ids)
    taps = [] if model.judge_token_head is not None else None
    att_taps = [] if ground is not None and ground_weight > 0 and model.cfg.ground_layer else None
    h, _ = model.decoder.hidden(emb, mask, pos, taps=taps, att_taps=att_taps)
    sel = labels != -100
    logits = model.decoder.lm_head(h[sel])
    tok_loss = F.cross_entropy(logits, labels[sel], reduction="none")
    w = weights[sel]
    dec_loss = None
    if decision is not None:
        d = decision[sel]
        if bool(d.any()):
            dec_loss = float(tok_loss[d].mean())
    loss = (tok_loss * w).sum() / w.sum()
    cell_loss = None
    if cells is not None and cell_weight > 0 and model.cell_head is not None:
        # one grid per batch row; rows share an image only by chance, so every row counts
        c = model.cell_head(grid)
        cl = F.cross_entropy(c.reshape(-1, c.shape[-1]), cell_targets(cells, model.cfg).reshape(-1))
        loss = loss + cell_weight * cl
        cell_loss = float(cl)
    if tok_flags is not None and judge_token_weight > 0 and taps is not None:
        flagged = tok_flags != -100
        if bool(flagged.any()):
            feats = taps[model.cfg.judge_token_layer - 1][flagged]
            loss = loss + judge_token_weight * F.cross_entropy(model.judge_token_head(feats), tok_flags[flagged])
    ground_loss = None
    if att_taps is not None and ground.shape[0] > 0:
        # attention mass that head 0 puts, from each named object's last word, on the image
        # tokens holding that object
        att = att_taps[model.cfg.ground_layer - 1][ground[:, 0], 0, ground[:, 1]]
        mass = (att * ground[:, 2:]).sum(-1)
        gl = -torch.log(mass.clamp_min(1e-6)).mean()
        loss = loss + ground_weight * gl
        ground_loss = float(gl)
    return loss, tok_loss.mean().detach(), int(sel.sum()), dec_loss, cell_loss, ground_loss


def lr_at(step: int, progress: float, peak: float, warmup: int, floor: float) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to floor*peak as progress -> 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, max(0.0, progress))
    return floor * peak + (1 - floor) * peak * 0.5 * (1 + math.cos(math.pi * p))


@torch.no_grad()
def heldout_loss(model, lines, images, meta, stage_ids, decision_ids, device, bs=32):
    model.eval()
    tot, n = 0.0, 0
    for s in range(0, len(lines), bs):
        ids, mask, pv, labels, weights, *_ = collate(lines[s: s + bs], images, meta, 1.0, stage_ids, decision_ids)
        ids, mask, pv, labels, weights = (t.to(device) for t in (ids, mask, pv, labels, weights))
        _, l, k, *_ = batch_loss(model, ids, mask, pv, labels, weights)
        tot += float(l) * k
        n += k
    model.train()
    return tot / max(1, n)


def param_groups(model, wd):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 and "pos" not in n and "embed" not in n else no_decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def save(model, opt, path, step, extra):
    tmp = path + ".tmp"
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"config": model.cfg.to_dict(), "model": state, "step": step, **extra}, tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("--steps", type=int, default=2000,
                    help="total optimizer steps; with --minutes 0 the run is deterministic given the data")
    ap.add_argument("--minutes", type=float, default=0.0,
                    help="training time budget (0 = none). The LR schedule runs on progress = "
                         "max(step/steps, elapsed/budget), so the cosine decay completes within the budget "
                         "even on a contended machine")
    ap.add_argument("--oversample", action="append", default=[], metavar="KIND=FACTOR",
                    help="repeat the train lines of a kind FACTOR times per epoch (repeatable), "
                         "e.g. judge:CAPTION=2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=8e-4)
    ap.add_argument("--min-lr-frac", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--key-weight", type=float, default=3.0,
                    help="loss weight of the CONCLUSION content of answer lines")
    ap.add_argument("--judge-weight", type=float, default=10.0,
                    help="loss weight of the decision token of judge/check lines (1/2, correct/incorrect)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=200, help="heldout loss every N steps (0 = off)")
    ap.add_argument("--eval-lines", type=int, default=128)
    ap.add_argument("--save-every-min", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    ap.add_argument("--cell-weight", type=float, default=1.0,
                    help="weight of the auxiliary loss classifying each vision grid cell (0 = off)")
    ap.add_argument("--judge-token-weight", type=float, default=0.0,
                    help="weight of the auxiliary loss marking, at the clause ends of judge candidates, the clause that holds the wrong candidate's mistake (0 = off)")
    ap.add_argument("--judge-token-layer", type=int, default=2,
                    help="decoder layer whose output the judge token head reads")
    ap.add_argument("--ground-weight", type=float, default=0.0,
                    help="weight of the auxiliary loss teaching one attention head to look, from each named "
                         "object, at the image tokens holding it (0 = off)")
    ap.add_argument("--ground-layer", type=int, default=2, help="decoder layer whose head 0 --ground-weight teaches")
    ap.add_argument("--vision-init", choices=["default", "he"], default="he")
    ap.add_argument("--patch-norm", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--token-order", choices=["row", "column"], default="column")
    ap.add_argument("--checkpoint", default=None, help="default: <work>/checkpoint.pt")
    ap.add_argument("--init-from", default=None,
                    help="start from this checkpoint's weights (fresh optimizer and schedule)")
    ap.add_argument("--log", default=None, help="default: <work>/train_log.json")
    ap.add_argument("--hidden-size", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vision-layers", type=int, default=2)
    ap.add_argument("--pos", choices=["rope", "learned"], default="rope",
                    help="decoder position encoding (both are driven by position_ids)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    seed_all(args.seed)
    os.makedirs(args.work, exist_ok=True)
    ck_path = args.checkpoint or os.path.join(args.work, "checkpoint.pt")
    log_path = args.log or os.path.join(args.work, "train_log.json")

    meta = load_meta(args.data)
    lines = oversample(load_lines(args.data, "train"), args.oversample, args.seed)
    images = np.ascontiguousarray(load_images(args.data, "train", meta))
    # the judge token and grounding targets need the candidates' words and the images' cells
    words = candidate_words(meta) if args.judge_token_weight > 0 or args.ground_weight > 0 else None
    cells = load_cells(args.data, "train", meta) if args.cell_weight > 0 or words is not None else None
    held = load_lines(args.data, "heldout")
    held_images = np.ascontiguousarray(load_images(args.data, "heldout", meta))
    rng = random.Random(args.seed + 1)
    held_eval = rng.sample(held, min(args.eval_lines, len(held)))
    stage_ids = meta.get("stage_tag_ids", {})
    decision_ids = set(meta.get("judge_choice_ids", {}).values()) | set(meta.get("check_ids", {}).values())
    max_len = max(len(l["ids"]) for l in lines)

    cfg = ModelConfig(
        vocab_size=int(meta["vocab_size"]), image_token_id=int(meta["image_token_id"]),
        bos_token_id=int(meta["bos_id"]), eos_token_id=int(meta["eos_id"]), pad_token_id=int(meta["pad_id"]),
        image_size=int(meta.get("image_size", 128)), hidden_size=args.hidden_size,
        intermediate_size=4 * args.hidden_size, num_hidden_layers=args.layers, vision_layers=args.vision_layers,
        max_position_embeddings=max(1024, max_len), pos_type=args.pos, vision_init=args.vision_init,
        patch_norm=args.patch_norm, token_order=args.token_order,
        cell_classes=int(meta["cell_classes"]) if args.cell_weight > 0 else 0,
        judge_token_layer=args.judge_token_layer if args.judge_token_weight > 0 else 0,
        ground_layer=args.ground_layer if args.ground_weight > 0 else 0,
    )
    if args.init_from:
        ck = torch.load(args.init_from, map_location="cpu")
        cfg = ModelConfig.from_dict(ck["config"])
        model = StagebeamTiny(cfg)
        model.load_state_dict(ck["model"])
        print(f"initialised from {args.init_from} (step {ck.get('step')})", flush=True)
    else:
        model = StagebeamTiny(cfg)
    device = torch.device(args.device)
    model.to(device)
    model.train()
    n_params = count_params(model)
    kinds = {}
    for l in lines:
        kinds[l["kind"]] = kinds.get(l["kind"], 0) + 1
    print(f"params {n_params:,} (vision {count_params(model.vision):,}); {len(lines)} train lines {kinds}; "
          f"max len {max_len}", flush=True)

    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    batcher = Batcher(lines, args.batch_size, args.seed)
    total = args.steps
    budget = args.minutes * 60 if args.minutes and args.minutes > 0 else None
    if total is None and budget is None:
        raise SystemExit("give --steps or --minutes")
    log = {"args": vars(args), "params": n_params, "config": cfg.to_dict(), "train_lines": len(lines),
           "kinds": kinds, "steps": [], "heldout": []}
    t0 = time.time()
    last_save = t0
    step = 0
    acc_loss, acc_n = 0.0, 0
    acc_dec, acc_dn = 0.0, 0
    acc_cell = acc_ground = 0.0
    while True:
        el = time.time() - t0
        progress = max(step / total if total else 0.0, el / budget if budget else 0.0)
        if progress >= 1.0:
            break
        lr = lr_at(step, progress, args.lr, args.warmup, args.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = batcher.next()
        batch_cells = torch.from_numpy(cells[[int(b["image"]) for b in batch]].astype(np.int64)) if cells is not None else None
        token_cells = cell_targets(batch_cells, cfg).tolist() if words is not None else None
        ids, mask, pv, labels, weights, decision, tok_flags, ground = collate(
            batch, images, meta, args.key_weight, stage_ids, decision_ids, args.judge_weight, words, token_cells)
        tensors = [t.to(device) if t is not None else None
                   for t in (ids, mask, pv, labels, weights, decision, batch_cells, tok_flags, ground)]
        loss, plain, _, dl, cl, gl = batch_loss(model, *tensors, cell_weight=args.cell_weight,
                                                judge_token_weight=args.judge_token_weight,
                                                ground_weight=args.ground_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        acc_loss += float(plain)
        acc_n += 1
        if dl is not None:
            acc_dec += dl
            acc_dn += 1
        if cl is not None:
            acc_cell += cl
        if gl is not None:
            acc_ground += gl
        if step % args.log_every == 0:
            el = time.time() - t0
            rec = {"step": step, "loss": acc_loss / acc_n, "decision_loss": acc_dec / max(1, acc_dn),
                   "cell_loss": acc_cell / acc_n, "ground_loss": acc_ground / acc_n, "lr": lr,
                   "grad_norm": float(gn), "elapsed_s": round(el, 1)}
            log["steps"].append(rec)
            print(json.dumps(rec), flush=True)
            acc_loss, acc_n = 0.0, 0
            acc_dec, acc_dn = 0.0, 0
            acc_cell = acc_ground = 0.0
        if args.eval_every and step % args.eval_every == 0:
            hl = heldout_loss(model, held_eval, held_images, meta, stage_ids, decision_ids, device)
            log["heldout"].append({"step": step, "loss": hl, "elapsed_s": round(time.time() - t0, 1)})
            print(json.dumps({"step": step, "heldout_loss": hl}), flush=True)
        if time.time() - last_save > args.save_every_min * 60:
            save(model, opt, ck_path, step, {"meta_vocab_size": meta["vocab_size"]})
            with open(log_path, "w") as f:
                json.dump(log, f)
            last_save = time.time()
    log["train_seconds"] = round(time.time() - t0, 1)
    log["final_step"] = step
    if args.eval_every and (not log["heldout"] or log["heldout"][-1]["step"] != step):
        hl = heldout_loss(model, held_eval, held_images, meta, stage_ids, decision_ids, device)
        log["heldout"].append({"step": step, "loss": hl, "elapsed_s": round(time.time() - t0, 1)})
        print(json.dumps({"step": step, "heldout_loss": hl}), flush=True)
    save(model, opt, ck_path, step, {"meta_vocab_size": meta["vocab_size"]})
    with open(log_path, "w") as f:
        json.dump(log, f)
    print(f"done: {step} steps in {log['train_seconds']} s -> {ck_path}", flush=True)


if __name__ == "__main__":
    main()
