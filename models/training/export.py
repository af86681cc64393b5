"""Export stagebeam-tiny to the model folder layout the engine loads (workers/engine/README.md).

    python3 models/training/export.py [--checkpoint models/.work/checkpoint.pt]
                                      [--data models/.work/data] [--out models/stagebeam-tiny]
    python3 models/training/export.py --random --out models/.work/untrained-model

Writes vision_encoder.onnx, embed_tokens.onnx, decoder_model_merged.onnx, config.json,
generation_config.json, preprocessor_config.json and golden/golden.json. tokenizer.json,
tokenizer_config.json and judge_templates.json are written by the TypeScript side.

Unless --no-verify, the export is checked with onnx.checker and then numerically with
onnxruntime-node (first step with empty past, KV-cache steps vs a no-cache pass, a left-
padded batch vs single rows, and the golden top-5 vs PyTorch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

# passive OpenMP waiting: on a shared 2-core machine spinning threads cost ~40% of a step
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import DEFAULT_DATA, DEFAULT_WORK, ROOT, load_images, load_meta, pixel_values_np  # noqa: E402
from model import ModelConfig, StagebeamTiny, load_checkpoint, count_params  # noqa: E402

OPSET = 17
REPO = os.path.dirname(ROOT)


class VisionWrap(nn.Module):
    def __init__(self, m: StagebeamTiny):
        super().__init__()
        self.vision = m.vision

    def forward(self, pixel_values):
        return self.vision(pixel_values)


class EmbedWrap(nn.Module):
    def __init__(self, m: StagebeamTiny):
        super().__init__()
        self.embed = m.embed_tokens

    def forward(self, input_ids):
        return self.embed(input_ids)


class DecoderWrap(nn.Module):
    def __init__(self, m: StagebeamTiny):
        super().__init__()
        self.decoder = m.decoder
        self.n = m.cfg.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past_flat):
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(self.n)]
        logits, presents = self.decoder(inputs_embeds, attention_mask, position_ids, past)
        out = [logits]
        for k, v in presents:
            out += [k, v]
        return tuple(out)


def config_from_meta(meta: dict) -> ModelConfig:
    return ModelConfig(
        vocab_size=int(meta["vocab_size"]),
        image_token_id=int(meta["image_token_id"]),
        bos_token_id=int(meta["bos_id"]),
        eos_token_id=int(meta["eos_id"]),
        pad_token_id=int(meta["pad_id"]),
        image_size=int(meta.get("image_size", 128)),
        max_position_embeddings=max(1024, int(meta.get("max_seq_len", 0))),
    )


def export_onnx(model: StagebeamTiny, out: str) -> None:
    cfg = model.cfg
    model.eval()
    D, H, hd, L = cfg.hidden_size, cfg.kv_heads, cfg.head_dim, cfg.num_hidden_layers
    with torch.no_grad():
        torch.onnx.export(
            VisionWrap(model), (torch.zeros(2, 3, cfg.image_size, cfg.image_size),),
            os.path.join(out, "vision_encoder.onnx"), opset_version=OPSET,
            input_names=["pixel_values"], output_names=["image_features"],
            dynamic_axes={"pixel_values": {0: "batch_size"}, "image_features": {0: "batch_size"}},
            do_constant_folding=True,
        )
        torch.onnx.export(
            EmbedWrap(model), (torch.zeros(2, 5, dtype=torch.long),),
            os.path.join(out, "embed_tokens.onnx"), opset_version=OPSET,
            input_names=["input_ids"], output_names=["inputs_embeds"],
            dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                          "inputs_embeds": {0: "batch_size", 1: "sequence_length"}},
            do_constant_folding=True,
        )
        B, T, P = 2, 3, 4  # non-trivial sizes for tracing; all three are dynamic in the graph
        past = []
        in_names = ["inputs_embeds", "attention_mask", "position_ids"]
        out_names = ["logits"]
        dyn = {
            "inputs_embeds": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"},
            "logits": {0: "batch_size", 1: "sequence_length"},
        }
        for i in range(L):
            for kv in ("key", "value"):
                past.append(torch.randn(B, H, P, hd))
                in_names.append(f"past_key_values.{i}.{kv}")
                out_names.append(f"present.{i}.{kv}")
                dyn[f"past_key_values.{i}.{kv}"] = {0: "batch_size", 2: "past_sequence_length"}
                dyn[f"present.{i}.{kv}"] = {0: "batch_size", 2: "total_sequence_length"}
        args = (
            torch.randn(B, T, D),
            torch.ones(B, P + T, dtype=torch.long),
            torch.arange(P, P + T).unsqueeze(0).repeat(B, 1),
            *past,
        )
        torch.onnx.export(
            DecoderWrap(model), args, os.path.join(out, "decoder_model_merged.onnx"),
            opset_version=OPSET, input_names=in_names, output_names=out_names,
            dynamic_axes=dyn, do_constant_folding=True,
        )
    import onnx

    # the image token count is fixed: pin dim 1 of image_features to image_seq_length
    vp = os.path.join(out, "vision_encoder.onnx")
    vm = onnx.load(vp)
    dim = vm.graph.output[0].type.tensor_type.shape.dim[1]
    dim.Clear()
    dim.dim_value = cfg.image_seq_length
    onnx.save(vm, vp)
    for name in ("vision_encoder.onnx", "embed_tokens.onnx", "decoder_model_merged.onnx"):
        onnx.checker.check_model(onnx.load(os.path.join(out, name)))


def write_configs(model: StagebeamTiny, meta: dict, out: str) -> None:
    cfg = model.cfg
    config = {
        "model_type": "stagebeam-tiny",
        "architectures": ["StagebeamTinyForConditionalGeneration"],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_position_embeddings,
        "position_embedding_type": cfg.pos_type,
        "rope_theta": cfg.rope_theta if cfg.pos_type == "rope" else None,
        "image_token_id": cfg.image_token_id,
        "image_seq_length": cfg.image_seq_length,
        "vision_config": {
            "image_size": cfg.image_size,
            "num_channels": 3,
            "hidden_size": cfg.vision_hidden_size,
            "num_hidden_layers": cfg.vision_layers,
            "num_attention_heads": cfg.vision_heads,
            "intermediate_size": cfg.vision_intermediate_size,
            "stem_channels": list(cfg.stem_channels),
            "grid_size": cfg.grid,
            "image_seq_length": cfg.image_seq_length,
        },
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        "stage_tag_ids": meta.get("stage_tag_ids"),
        "judge_choice_ids": meta.get("judge_choice_ids"),
        "check_ids": meta.get("check_ids"),
        "torch_dtype": "float32",
    }
    gen = {
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        "do_sample": True,
        "temperature": 0.6,
        "top_p": 0.9,
        "max_new_tokens": 256,
    }
    pre = {
        "image_processor_type": "StagebeamTinyImageProcessor",
        "size": {"height": cfg.image_size, "width": cfg.image_size},
        "do_resize": True,
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(meta.get("image_mean", [0.5, 0.5, 0.5])),
        "image_std": list(meta.get("image_std", [0.5, 0.5, 0.5])),
        "do_convert_rgb": True,
        "image_seq_length": cfg.image_seq_length,
    }
    for name, obj in (("config.json", config), ("generation_config.json", gen),
                      ("preprocessor_config.json", pre)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")


@torch.no_grad()
def greedy_from_prompt(model: StagebeamTiny, ids: list, pv: torch.Tensor, max_new: int = 160) -> list:
    cfg = model.cfg
    x = torch.tensor([ids])
    mask = torch.ones_like(x)
    logits, past = model(x, pv, mask, torch.arange(len(ids)).unsqueeze(0))
    out = []
    pos = len(ids)
    for _ in range(max_new):
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        if nxt == cfg.eos_token_id:
            break
        mask = torch.cat([mask, torch.ones(1, 1, dtype=torch.long)], 1)
        emb = model.embed_tokens(torch.tensor([[nxt]]))
        logits, past = model.decoder(emb, mask, torch.tensor([[pos]]), past)
        pos += 1
    return out


def write_golden(model: StagebeamTiny, meta: dict, data_dir: str, out: str) -> dict:
    with open(os.path.join(data_dir, "golden.json")) as f:
        g = json.load(f)
    imgs = load_images(data_dir, "heldout", meta)
    pv_np = pixel_values_np(imgs[g["image"]: g["image"] + 1], meta)
    raw = pv_np.astype("<f4").tobytes()
    ids = [int(i) for i in g["ids"]]
    model.eval()
    with torch.no_grad():
        pv = torch.from_numpy(pv_np)
        x = torch.tensor([ids])
        logits, _ = model(x, pv, torch.ones_like(x), torch.arange(len(ids)).unsqueeze(0))
        last = logits[0, -1]
        vals, idx = last.topk(5)
        feats = model.vision(pv)[0]
    greedy = greedy_from_prompt(model, ids, pv)
    golden = {
        "image": int(g["image"]),
        "question": g["question"],
        "ids": ids,
        "pixel_values_shape": list(pv_np.shape),
        "pixel_values_dtype": "float32",
        "pixel_values_sha256": hashlib.sha256(raw).hexdigest(),
        "pixel_values_sum": float(pv_np.astype(np.float64).sum()),
        "pixel_values_note": "(x/255 - mean)/std computed in float64, rounded once to float32, "
                             "layout [1,3,H,W], sha256 over little-endian float32 bytes",
        "image_features_sum": float(feats.double().sum()),
        "top5_ids": [int(i) for i in idx],
        "top5_logits": [float(v) for v in vals],
        "greedy_ids": greedy,
        "greedy_note": "greedy continuation from PyTorch (KV cache), up to eos or 160 tokens; "
                       "ties in float32 may legitimately differ between runtimes",
        "source": "pytorch",
    }
    os.makedirs(os.path.join(out, "golden"), exist_ok=True)
    with open(os.path.join(out, "golden", "golden.json"), "w") as f:
        f.write("{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in golden.items()) + "\n}\n")
    return {"golden": golden, "pixel_values": pv_np}


VERIFY_MJS = r"""
import ort from 'onnxruntime-node';
import fs from 'node:fs';
const [,, dir, inputPath] = process.argv;
const inp = JSON.parse(fs.readFileSync(inputPath, 'utf8'));
const cfg = JSON.parse(fs.readFileSync(`${dir}/config.json`, 'utf8'));
const pvBuf = fs.readFileSync(inp.pixel_values_path);
const pv = new Float32Array(pvBuf.buffer, pvBuf.byteOffset, pvBuf.byteLength / 4);
const vis = await ort.InferenceSession.create(`${dir}/vision_encoder.onnx`);
const emb = await ort.InferenceSession.create(`${dir}/embed_tokens.onnx`);
const dec = await ort.InferenceSession.create(`${dir}/decoder_model_merged.onnx`);
const D = cfg.hidden_size, H = cfg.num_key_value_heads, hd = cfg.head_dim, L = cfg.num_hidden_layers, V = cfg.vocab_size;
const S = cfg.image_size ?? cfg.vision_config.image_size;
const i64 = (a, dims) => new ort.Tensor('int64', BigInt64Array.from(a.map(BigInt)), dims);

const imgOut = await vis.run({ pixel_values: new ort.Tensor('float32', pv, [1, 3, S, S]) });
const feats = imgOut.image_features.data;
// batch of 2 through the vision encoder too (dynamic batch)
const pv2 = new Float32Array(pv.length * 2); pv2.set(pv, 0); pv2.set(pv, pv.length);
const img2 = await vis.run({ pixel_values: new ort.Tensor('float32', pv2, [2, 3, S, S]) });
let visBatchDiff = 0;
for (let i = 0; i < feats.length; i++) visBatchDiff = Math.max(visBatchDiff, Math.abs(img2.image_features.data[feats.length + i] - feats[i]));
let featSum = 0; for (const v of feats) featSum += v;

async function embedRow(ids) {
  const o = await emb.run({ input_ids: i64(ids, [1, ids.length]) });
  const e = new Float32Array(o.inputs_embeds.data);
  let j = 0;
  for (let t = 0; t < ids.length; t++) if (ids[t] === cfg.image_token_id) { e.set(feats.subarray(j * D, (j + 1) * D), t * D); j++; }
  if (j !== cfg.image_seq_length) throw new Error(`image tokens ${j} != ${cfg.image_seq_length}`);
  return e;
}
function emptyPast(B) { const p = {}; for (let i = 0; i < L; i++) for (const kv of ['key', 'value']) p[`past_key_values.${i}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [B, H, 0, hd]); return p; }
function presentsAsPast(out) { const p = {}; for (let i = 0; i < L; i++) for (const kv of ['key', 'value']) p[`past_key_values.${i}.${kv}`] = out[`present.${i}.${kv}`]; return p; }

const ids = inp.ids, n = ids.length;
const E = await embedRow(ids);
// 1) full pass, P = 0
const full = await dec.run({ inputs_embeds: new ort.Tensor('float32', E, [1, n, D]), attention_mask: i64(Array(n).fill(1), [1, n]),
  position_ids: i64([...Array(n).keys()], [1, n]), ...emptyPast(1) });
const FL = full.logits.data;
// 2) chunked with cache: [0, n-3) then 1 token then 2 tokens
let maxDiff = 0;
const cuts = [0, n - 3, n - 2, n];
let past = emptyPast(1);
for (let c = 0; c + 1 < cuts.length; c++) {
  const a = cuts[c], b = cuts[c + 1], T = b - a;
  const o = await dec.run({ inputs_embeds: new ort.Tensor('float32', E.slice(a * D, b * D), [1, T, D]),
    attention_mask: i64(Array(b).fill(1), [1, b]), position_ids: i64([...Array(T).keys()].map(x => x + a), [1, T]), ...past });
  if (o['present.0.key'].dims[2] !== b) throw new Error('present length');
  for (let t = 0; t < T; t++) for (let v = 0; v < V; v++) maxDiff = Math.max(maxDiff, Math.abs(o.logits.data[t * V + v] - FL[(a + t) * V + v]));
  past = presentsAsPast(o);
}
// 3) left-padded batch of 2: row 0 = full prompt, row 1 = prompt without its last 2 tokens, left-padded by 2
const m = n - 2, pad = 2;
const E2 = new Float32Array(2 * n * D); E2.set(E, 0); E2.set(E.slice(0, m * D), n * D + pad * D);
const mask2 = [...Array(n).fill(1), ...Array(pad).fill(0), ...Array(m).fill(1)];
const pos2 = [...Array(n).keys(), ...Array(pad).fill(0), ...Array(m).keys()];
const b2 = await dec.run({ inputs_embeds: new ort.Tensor('float32', E2, [2, n, D]), attention_mask: i64(mask2, [2, n]), position_ids: i64(pos2, [2, n]), ...emptyPast(2) });
let padDiff = 0;
for (let v = 0; v < V; v++) {
  padDiff = Math.max(padDiff, Math.abs(b2.logits.data[(n - 1) * V + v] - FL[(n - 1) * V + v]));
  padDiff = Math.max(padDiff, Math.abs(b2.logits.data[n * V + (n - 1) * V + v] - FL[(m - 1) * V + v]));
}
// 3b) one cached decode step on the padded batch (feed token ids[m] to row 1 and ids[n-1] to row 0 is not comparable; use row 1 only)
const stepE = new Float32Array(2 * D); stepE.set(E.slice((n - 1) * D, n * D), 0); stepE.set(E.slice(m * D, (m + 1) * D), D);
const b3 = await dec.run({ inputs_embeds: new ort.Tensor('float32', stepE, [2, 1, D]), attention_mask: i64([...mask2.slice(0, n), 1, ...mask2.slice(n), 1], [2, n + 1]),
  position_ids: i64([n, m], [2, 1]), ...presentsAsPast(b2) });
let padStepDiff = 0;
for (let v = 0; v < V; v++) padStepDiff = Math.max(padStepDiff, Math.abs(b3.logits.data[V + v] - FL[m * V + v]));
const last = Array.from(FL.slice((n - 1) * V, n * V));
const top5 = last.map((v, i) => [v, i]).sort((x, y) => y[0] - x[0]).slice(0, 5);
let anyNaN = false; for (const v of b2.logits.data) if (!Number.isFinite(v)) anyNaN = true;
console.log(JSON.stringify({ kvMaxDiff: maxDiff, leftPadMaxDiff: padDiff, leftPadStepMaxDiff: padStepDiff, visBatchDiff, featSum,
  anyNaN, top5_ids: top5.map(x => x[1]), top5_logits: top5.map(x => x[0]) }));
"""


def verify_with_node(out: str, golden: dict, pv_np: np.ndarray, tol: float = 1e-4) -> dict:
    work = os.path.join(ROOT, ".work")
    os.makedirs(work, exist_ok=True)
    script = os.path.join(work, "verify_onnx.mjs")
    with open(script, "w") as f:
        f.write(VERIFY_MJS)
    with tempfile.TemporaryDirectory() as td:
        pv_path = os.path.join(td, "pv.f32")
        pv_np.astype("<f4").tofile(pv_path)
        inp = os.path.join(td, "in.json")
        with open(inp, "w") as f:
            json.dump({"ids": golden["ids"], "pixel_values_path": pv_path}, f)
        res = subprocess.run(["node", script, os.path.abspath(out), inp], cwd=REPO,
                             capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"node verification failed:\n{res.stdout}\n{res.stderr}")
    r = json.loads(res.stdout.strip().splitlines()[-1])
    problems = []
    for k in ("kvMaxDiff", "leftPadMaxDiff", "leftPadStepMaxDiff", "visBatchDiff"):
        if not (r[k] <= tol):
            problems.append(f"{k}={r[k]}")
    if r["anyNaN"]:
        problems.append("NaN in padded batch logits")
    if r["top5_ids"][:3] != golden["top5_ids"][:3]:
        problems.append(f"top5 ids onnx {r['top5_ids']} vs torch {golden['top5_ids']}")
    d = max(abs(a - b) for a, b in zip(r["top5_logits"], golden["top5_logits"]))
    r["top5_logit_maxdiff_vs_torch"] = d
    if d > 1e-3:
        problems.append(f"top5 logits differ by {d}")
    if problems:
        raise RuntimeError("ONNX verification failed: " + "; ".join(problems))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=os.path.join(DEFAULT_WORK, "checkpoint.pt"))
    ap.add_argument("--random", action="store_true", help="export a randomly initialised model")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--out", default=os.path.join(ROOT, "stagebeam-tiny"))
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    meta = load_meta(args.data)
    if args.random:
        model = StagebeamTiny(config_from_meta(meta)).eval()
    else:
        model, _ = load_checkpoint(args.checkpoint)
        if model.cfg.vocab_size != int(meta["vocab_size"]):
            raise SystemExit(f"checkpoint vocab {model.cfg.vocab_size} != data vocab {meta['vocab_size']}")
    os.makedirs(args.out, exist_ok=True)
    export_onnx(model, args.out)
    write_configs(model, meta, args.out)
    g = write_golden(model, meta, args.data, args.out)
    sizes = {n: os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out)
             if os.path.isfile(os.path.join(args.out, n))}
    total = sum(sizes.values())
    print(f"exported to {args.out}: params {count_params(model):,}, {total / 1e6:.1f} MB")
    if total > 30e6:
        raise SystemExit("model folder exceeds 30 MB")
    if not args.no_verify:
        r = verify_with_node(args.out, g["golden"], g["pixel_values"])
        print("onnxruntime-node verification ok:", json.dumps(r))


if __name__ == "__main__":
    main()
