"""Train the process verifier stagebeam-tiny-prm on models/.work/verifier-data (see DATA_FORMAT.md).

    python3 models/training/train_verifier.py [--steps 3000] [--minutes 42] [--device cpu]

The model is stagebeam-tiny's architecture (model.py) with the verifier's tokenizer, started from
the bundled policy's weights (read from its ONNX files; the three added tokens start fresh). At
each step marker the logits of the good and bad tokens are trained with a 2-way cross entropy
against the step's label (the engine reads exactly these two logits there). Two auxiliaries: the
cell loss of the vision encoder (as for the policy), and a light next-token loss on text known to
be right (a scene's own accepted stages and right candidates), which keeps what the next object or
number should be. A batch holds pairs: the text the two candidates share is run once and each
candidate continues it through the KV cache. AdamW with warmup and cosine decay, as train.py;
--minutes also finishes the schedule within that time. Writes models/.work/verifier-checkpoint.pt
and models/.work/verifier-train_log.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import numpy as np

# passive OpenMP waiting: on a shared 2-core machine spinning threads cost ~40% of a step
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import DEFAULT_WORK, ROOT, load_cells, load_images, load_lines, load_meta, pixel_values_np  # noqa: E402
from model import ModelConfig, StagebeamTiny, cell_targets, count_params  # noqa: E402
from train import Batcher, lr_at, param_groups, save, seed_all  # noqa: E402

DEFAULT_VERIFIER_DATA = os.path.join(ROOT, ".work", "verifier-data")
DEFAULT_CHECKPOINT = os.path.join(DEFAULT_WORK, "verifier-checkpoint.pt")


def load_policy_weights(model: StagebeamTiny, folder: str) -> int:
    """Copies the exported policy's weights (its ONNX files) into `model` wherever a parameter of the
    same name and shape exists; embedding rows and LM head rows of tokens the policy has are copied
    too, so only the verifier's added tokens start fresh. Linear weights appear in the graphs as the
    transposed right operand of a MatMul node named after the module. -> number of tensors copied."""
    import onnx
    from onnx import numpy_helper

    state = model.state_dict()
    copied = 0
    for name in ("vision_encoder.onnx", "embed_tokens.onnx", "decoder_model_merged.onnx"):
        graph = onnx.load(os.path.join(folder, name)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        weights = {k.replace("embed.", "embed_tokens.", 1): v for k, v in inits.items() if not k.startswith("onnx::")}
        for node in graph.node:
            if node.op_type == "MatMul" and node.input[1] in inits and node.name.endswith("/MatMul"):
                weights[node.name.strip("/").removesuffix("/MatMul").replace("/", ".") + ".weight"] = inits[node.input[1]].T
        for key, value in weights.items():
            if key not in state:
                continue
            t = torch.from_numpy(np.array(value))
            target = state[key]
            if t.shape == target.shape:
                target.copy_(t)
            elif t.dim() == 2 and t.shape[1] == target.shape[1] and t.shape[0] < target.shape[0]:
                target[: t.shape[0]].copy_(t)  # token rows: the policy's vocabulary is a prefix of the verifier's
            else:
                raise SystemExit(f"{folder}/{name}: {key} has shape {tuple(t.shape)}; the verifier's is {tuple(target.shape)}")
            copied += 1
    return copied


def init_object_tokens(model: StagebeamTiny, meta, images, cells, n: int = 512, fit_steps: int = 300) -> dict:
    """Starts the verifier's object reading from what the policy's encoder already sees: the cell
    head is fitted as a linear probe on the grid features of `n` training images (so the object
    tokens are right from the first step), and each object's embedding is the sum of its words'
    token embeddings ("large", "green", "triangle"), scaled to the norm of the image features, so
    an image token holding the object looks like the words that name it (the empty cell's stays
    zero). -> probe accuracy and the scale."""
    attrs, vocab = meta["cell_attributes"], meta["vocab"]
    word = {t[1:]: i for i, t in enumerate(vocab) if t.startswith("\u2581")}  # the words as captions write them
    emb = model.embed_tokens.weight
    pick = np.random.default_rng(0).choice(len(images), size=min(n, len(images)), replace=False)
    with torch.no_grad():
        grid = model.vision.encode(torch.from_numpy(pixel_values_np(images[np.sort(pick)], meta)))
        feats = model.vision.proj2(F.gelu(model.vision.proj1(grid)))
    targets = cell_targets(torch.from_numpy(cells[np.sort(pick)].astype(np.int64)), model.cfg).reshape(-1)
    x = grid.reshape(-1, grid.shape[-1])
    opt = torch.optim.Adam(model.vision.cell_head.parameters(), lr=1e-2)
    for _ in range(fit_steps):
        loss = F.cross_entropy(model.vision.cell_head(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        probe = float((model.vision.cell_head(x).argmax(-1) == targets).float().mean())
        rows = torch.zeros_like(model.vision.object_embed)
        for s, size in enumerate(attrs["sizes"]):
            for c, color in enumerate(attrs["colors"]):
                for h, shape in enumerate(attrs["shapes"]):
                    try:
                        ids = [word[size], word[color], word[shape]]
                    except KeyError as e:
                        raise SystemExit(f"object tokens: the word {e} is not a word-initial token of the verifier's vocabulary")
                    rows[1 + (s * len(attrs["colors"]) + c) * len(attrs["shapes"]) + h] = emb[ids].sum(0)
        scale = float(feats.norm(dim=-1).mean() / rows[1:].norm(dim=-1).mean())
        model.vision.object_embed.copy_(rows * scale)
    return {"probe_cell_accuracy": round(probe, 4), "object_embed_scale": round(scale, 2)}


def collate(batch, images, meta):
    """Whole sequences, one a row (what the engine feeds): -> input_ids, attention_mask,
    pixel_values, marker (row, position) pairs [N,2]."""
    pad = int(meta["pad_id"])
    T = max(len(b["ids"]) for b in batch)
    ids = torch.full((len(batch), T), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    where = []
    for r, b in enumerate(batch):
        ids[r, : len(b["ids"])] = torch.tensor(b["ids"])
        mask[r, : len(b["ids"])] = 1
        where += [(r, p) for p in b["markers"]]
    pv = torch.from_numpy(pixel_values_np(images[[int(b["image"]) for b in batch]], meta))
    return ids, mask, pv, torch.tensor(where, dtype=torch.long)


def pairs_of(lines):
    """Train lines come as (right, wrong) candidates of one pair, which share everything before the candidate."""
    out = []
    for good, bad in zip(lines[0::2], lines[1::2]):
        if good["role"] != "good" or bad["role"] != "bad" or good["ids"][: good["cand_start"]] != bad["ids"][: bad["cand_start"]]:
            raise SystemExit(f"train lines of image {good['image']}: expected a right and a wrong candidate after the same text")
        out.append({"ids": good["ids"] if len(good["ids"]) >= len(bad["ids"]) else bad["ids"], "good": good, "bad": bad})
    return out


def right_padded(rows, pad):
    T = max(len(x) for x in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for r, x in enumerate(rows):
        ids[r, : len(x)] = torch.tensor(x)
        mask[r, : len(x)] = 1
    return ids, mask


def collate_pairs(pairs, images, meta):
    """Training batches of pairs: the shared text (image, question, accepted stages) is one row per
    pair, run once; the two candidates are rows of their own that continue it through its KV cache.
    -> dict of tensors: prefix ids/mask, candidate ids/mask/positions, pixel values, markers (candidate
    row, position) with their labels (0 = good, 1 = bad), next-token labels of both blocks (-100 = none)."""
    pad, marker = int(meta["pad_id"]), int(meta["marker_id"])
    prefixes = [u["good"]["ids"][: u["good"]["cand_start"]] for u in pairs]
    cands = [line for u in pairs for line in (u["good"], u["bad"])]
    p_ids, p_mask = right_padded(prefixes, pad)
    c_ids, c_mask = right_padded([c["ids"][c["cand_start"]:] for c in cands], pad)
    p_lm = torch.full_like(p_ids, -100)
    c_lm = torch.full_like(c_ids, -100)
    c_pos = torch.zeros_like(c_ids)
    where, verdicts = [], []
    for u, (prefix, unit) in enumerate(zip(prefixes, pairs)):
        if unit["good"]["context"] == "gold":
            # the scene's own accepted stages are right text
            for t in range(unit["good"]["target_start"] - 1, len(prefix) - 1):
                p_lm[u, t] = prefix[t + 1]
    for r, c in enumerate(cands):
        cs = c["cand_start"]
        c_pos[r] = torch.arange(cs, cs + c_ids.shape[1])
        for p, good in zip(c["markers"], c["labels"]):
            where.append((r, p - cs))
            verdicts.append(0 if good else 1)
        if c["context"] == "gold" and c["role"] == "good":
            x = c["ids"]
            for t in range(cs, len(x) - 1):
                if x[t] != marker and x[t + 1] != marker:
                    c_lm[r, t - cs] = x[t + 1]
    pv = torch.from_numpy(pixel_values_np(images[[int(u["good"]["image"]) for u in pairs]], meta))
    return {"p_ids": p_ids, "p_mask": p_mask, "p_lm": p_lm, "c_ids": c_ids, "c_mask": c_mask, "c_pos": c_pos,
            "c_lm": c_lm, "pv": pv, "where": torch.tensor(where, dtype=torch.long),
            "verdicts": torch.tensor(verdicts, dtype=torch.long)}


def verdict_logits(model: StagebeamTiny, h: torch.Tensor, where: torch.Tensor, meta) -> torch.Tensor:
    """[N,2] logits of the good and bad tokens at the markers, from the exported LM head."""
    feats = h[where[:, 0], where[:, 1]]
    w = model.decoder.lm_head.weight[[int(meta["good_id"]), int(meta["bad_id"])]]
    return feats @ w.t()


def forward(model: StagebeamTiny, ids, mask, pv):
    emb, grid = model.merge_embeds_with_grid(ids, pv)
    pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand_as(ids)
    h, presents = model.decoder.hidden(emb, mask, pos)
    return h, grid, presents


def forward_pairs(model: StagebeamTiny, b):
    """-> hidden states of the prefix rows, of the candidate rows, and the vision grid."""
    h_p, grid, presents = forward(model, b["p_ids"], b["p_mask"], b["pv"])
    past = [(k.repeat_interleave(2, dim=0), v.repeat_interleave(2, dim=0)) for k, v in presents]
    mask = torch.cat([b["p_mask"].repeat_interleave(2, dim=0), b["c_mask"]], dim=1)
    h_c, _ = model.decoder.hidden(model.embed_tokens(b["c_ids"]), mask, b["c_pos"], past)
    return h_p, h_c, grid


@torch.no_grad()
def step_scores(model: StagebeamTiny, lines, images, meta, device, bs: int = 32) -> list:
    """P(good) at every marker of every line: a list of per-line lists, in line order."""
    model.eval()
    order = sorted(range(len(lines)), key=lambda i: len(lines[i]["ids"]))
    scores = [None] * len(lines)
    for s in range(0, len(order), bs):
        idx = order[s: s + bs]
        ids, mask, pv, where = collate([lines[i] for i in idx], images, meta)
        h, _, _ = forward(model, ids.to(device), mask.to(device), pv.to(device))
        logits = verdict_logits(model, h, where.to(device), meta)
        p = torch.sigmoid(logits[:, 0] - logits[:, 1]).cpu().tolist()
        k = 0
        for i in idx:
            m = len(lines[i]["markers"])
            scores[i] = p[k: k + m]
            k += m
    model.train()
    return scores


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_VERIFIER_DATA)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=0.0,
                    help="time budget (0 = none): the LR schedule runs on max(step/steps, elapsed/budget)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--min-lr-frac", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--cell-weight", type=float, default=1.0, help="weight of the vision cell loss (0 = off)")
    ap.add_argument("--lm-weight", type=float, default=0.3, help="weight of the next-token loss on right text (0 = off)")
    ap.add_argument("--init-from", default=os.path.join(ROOT, "stagebeam-tiny"),
                    help="exported policy folder whose weights start the verifier ('' = random init); "
                         "its decoder shape must then be the verifier's")
    ap.add_argument("--object-tokens", action="store_true",
                    help="the verifier's own object reading: the cell head feeds each image token the embedding "
                         "of the object its cell holds (model.py object_tokens; exported in vision_encoder.onnx)")
    ap.add_argument("--hidden-size", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=200, help="held-out step loss every N steps (0 = off)")
    ap.add_argument("--eval-lines", type=int, default=192)
    ap.add_argument("--save-every-min", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    ap.add_argument("--log", default=os.path.join(DEFAULT_WORK, "verifier-train_log.json"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    seed_all(args.seed)
    meta = load_meta(args.data)
    lines = load_lines(args.data, "train")
    images = np.ascontiguousarray(load_images(args.data, "train", meta))
    cells = load_cells(args.data, "train", meta)
    held = load_lines(args.data, "heldout")
    held_images = np.ascontiguousarray(load_images(args.data, "heldout", meta))
    held_eval = random.Random(args.seed + 1).sample(held, min(args.eval_lines, len(held)))
    max_len = max(len(l["ids"]) for l in lines + held)

    cfg = ModelConfig(
        vocab_size=int(meta["vocab_size"]), image_token_id=int(meta["image_token_id"]),
        bos_token_id=int(meta["bos_id"]), eos_token_id=int(meta["eos_id"]), pad_token_id=int(meta["pad_id"]),
        image_size=int(meta["image_size"]), hidden_size=args.hidden_size, intermediate_size=4 * args.hidden_size,
        num_hidden_layers=args.layers, max_position_embeddings=max(1024, max_len), pos_type="rope",
        vision_init="he", patch_norm=True, token_order="column",
        cell_classes=int(meta["cell_classes"]) if args.cell_weight > 0 or args.object_tokens else 0,
        object_tokens=args.object_tokens,
    )
    model = StagebeamTiny(cfg)
    if args.init_from:
        print(f"initialised {load_policy_weights(model, args.init_from)} tensors from {args.init_from}", flush=True)
    if args.object_tokens:
        print(f"object tokens: {json.dumps(init_object_tokens(model, meta, images, cells))}", flush=True)
    device = torch.device(args.device)
    model.to(device).train()
    n_params = count_params(model)
    print(f"params {n_params:,} (vision {count_params(model.vision):,}); {len(lines)} train lines; max len {max_len}",
          flush=True)

    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    # a batch holds --batch-size candidates: half as many pairs
    batcher = Batcher(pairs_of(lines), args.batch_size // 2, args.seed)
    budget = args.minutes * 60 if args.minutes > 0 else None
    log = {"args": vars(args), "params": n_params, "config": cfg.to_dict(), "train_lines": len(lines),
           "steps": [], "heldout": []}
    t0 = time.time()
    last_save = t0
    step = 0
    acc = {"verdict": 0.0, "lm": 0.0, "cell": 0.0, "n": 0}

    def held_out(step_now):
        scores = step_scores(model, held_eval, held_images, meta, device)
        ys = [y for l in held_eval for y in l["labels"]]
        ps = [p for s in scores for p in s]
        loss = float(np.mean([-np.log(max(1e-7, p if y else 1 - p)) for p, y in zip(ps, ys)]))
        accuracy = float(np.mean([(p > 0.5) == bool(y) for p, y in zip(ps, ys)]))
        rec = {"step": step_now, "step_loss": loss, "step_accuracy": accuracy, "elapsed_s": round(time.time() - t0, 1)}
        log["heldout"].append(rec)
        print(json.dumps({"heldout": rec}), flush=True)

    while True:
        el = time.time() - t0
        progress = max(step / args.steps, el / budget if budget else 0.0)
        if progress >= 1.0:
            break
        lr = lr_at(step, progress, args.lr, args.warmup, args.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = batcher.next()
        b = {k: t.to(device) for k, t in collate_pairs(batch, images, meta).items()}
        h_p, h_c, grid = forward_pairs(model, b)
        verdict_loss = F.cross_entropy(verdict_logits(model, h_c, b["where"], meta), b["verdicts"])
        loss = verdict_loss
        feats = torch.cat([h_p[b["p_lm"] != -100], h_c[b["c_lm"] != -100]])
        targets = torch.cat([b["p_lm"][b["p_lm"] != -100], b["c_lm"][b["c_lm"] != -100]])
        lm_loss = F.cross_entropy(model.decoder.lm_head(feats), targets) if targets.numel() > 0 else None
        if lm_loss is not None and args.lm_weight > 0:
            loss = loss + args.lm_weight * lm_loss
        if model.cell_head is not None:
            batch_cells = torch.from_numpy(cells[[int(u["good"]["image"]) for u in batch]].astype(np.int64)).to(device)
            c = model.cell_head(grid)
            cell_loss = F.cross_entropy(c.reshape(-1, c.shape[-1]), cell_targets(batch_cells, cfg).reshape(-1))
            loss = loss + args.cell_weight * cell_loss
            acc["cell"] += float(cell_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        acc["verdict"] += float(verdict_loss)
        acc["lm"] += float(lm_loss) if lm_loss is not None else 0.0
        acc["n"] += 1
        if step % args.log_every == 0:
            n = acc["n"]
            rec = {"step": step, "verdict_loss": acc["verdict"] / n, "lm_loss": acc["lm"] / n, "cell_loss": acc["cell"] / n,
                   "lr": lr, "grad_norm": float(gn), "elapsed_s": round(time.time() - t0, 1)}
            log["steps"].append(rec)
            print(json.dumps(rec), flush=True)
            acc = {"verdict": 0.0, "lm": 0.0, "cell": 0.0, "n": 0}
        if args.eval_every and step % args.eval_every == 0:
            held_out(step)
        if time.time() - last_save > args.save_every_min * 60:
            save(model, opt, args.checkpoint, step, {})
            last_save = time.time()
    log["train_seconds"] = round(time.time() - t0, 1)
    log["final_step"] = step
    if args.eval_every and (not log["heldout"] or log["heldout"][-1]["step"] != step):
        held_out(step)
    save(model, opt, args.checkpoint, step, {})
    with open(args.log, "w") as f:
        json.dump(log, f)
    print(f"done: {step} steps in {log['train_seconds']} s -> {args.checkpoint}", flush=True)


if __name__ == "__main__":
    main()
