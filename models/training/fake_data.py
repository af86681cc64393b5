"""Development only: write a tiny, valid-looking data folder per DATA_FORMAT.md.

    python3 models/training/fake_data.py /tmp/sb-fake-data [--n-images 64]

The content is meaningless (random circles, counts as answers); it exists so that the
training/evaluation/export code can run before the TypeScript data builder does.
"""

import argparse
import json
import os

import numpy as np

SPECIALS = ["<unk>", "<pad>", "<bos>", "<eos>", "<|user|>", "<|assistant|>", "<image>"]
TAGS = ["<SUMMARY>", "</SUMMARY>", "<CAPTION>", "</CAPTION>", "<REASONING>", "</REASONING>",
        "<CONCLUSION>", "</CONCLUSION>"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n-images", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=300)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    os.makedirs(args.out, exist_ok=True)
    words = ["▁" + w for w in ["1", "2", "3", "4", "5", "6", "7", "8", "0", "I", "choose", "response",
                                "correct", "incorrect", "How", "many", "objects", "are", "there", "circles"]]
    vocab = SPECIALS + TAGS + words
    vocab += [f"▁w{i}" for i in range(args.vocab - len(vocab))]
    tid = {t: i for i, t in enumerate(vocab)}
    S = 64
    meta = {
        "vocab_size": len(vocab), "pad_id": tid["<pad>"], "bos_id": tid["<bos>"], "eos_id": tid["<eos>"],
        "image_token_id": tid["<image>"], "image_seq_length": S, "image_size": 128,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "stage_tag_ids": {t: tid[t] for t in TAGS},
        "judge_choice_ids": {"1": tid["▁1"], "2": tid["▁2"]},
        "check_ids": {"correct": tid["▁correct"], "incorrect": tid["▁incorrect"]},
        "vocab": vocab, "max_seq_len": 320,
    }
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f)

    yy, xx = np.mgrid[0:128, 0:128]
    fillers = [tid[f"▁w{i}"] for i in range(40)]
    for split, n_img in (("train", args.n_images), ("heldout", max(8, args.n_images // 4))):
        imgs = np.full((n_img, 128, 128, 3), 220, np.uint8)
        counts = rng.integers(1, 9, n_img)
        for i in range(n_img):
            for _ in range(counts[i]):
                cx, cy = rng.integers(10, 118, 2)
                r = int(rng.choice([7, 12]))
                col = rng.integers(0, 255, 3)
                imgs[i][(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = col
        imgs.tofile(os.path.join(args.out, f"{split}_images.u8"))
        with open(os.path.join(args.out, f"{split}.jsonl"), "w") as f:
            for i in range(n_img):
                q = [tid["▁How"], tid["▁many"], tid["▁objects"], tid["▁are"], tid["▁there"]]
                prompt = [tid["<bos>"], tid["<|user|>"]] + [tid["<image>"]] * S + q + [tid["<|assistant|>"]]
                ans = [tid[f"▁{counts[i]}"]]
                tgt = []
                for st in ("SUMMARY", "CAPTION", "REASONING"):
                    tgt += [tid[f"<{st}>"]] + list(rng.choice(fillers, rng.integers(3, 12))) + [tid[f"</{st}>"]]
                tgt += [tid["<CONCLUSION>"]] + ans + [tid["</CONCLUSION>"], tid["<eos>"]]
                line = {"image": i, "ids": [int(x) for x in prompt + tgt], "target_start": len(prompt),
                        "kind": "answer", "family": "count", "answer_ids": [int(a) for a in ans]}
                f.write(json.dumps(line) + "\n")
                # a judge line and a check line per image
                label = int(rng.integers(1, 3))
                jq = q + list(rng.choice(fillers, 40))
                jp = [tid["<bos>"], tid["<|user|>"]] + [tid["<image>"]] * S + jq + [tid["<|assistant|>"]]
                jt = [tid["▁I"], tid["▁choose"], tid["▁response"], tid[f"▁{label}"], tid["<eos>"]]
                f.write(json.dumps({"image": i, "ids": [int(x) for x in jp + jt], "target_start": len(jp),
                                    "kind": "judge:CAPTION", "family": "count", "label": str(label)}) + "\n")
                lab = "correct" if rng.random() < 0.5 else "incorrect"
                ct = [tid[f"▁{lab}"], tid["<eos>"]]
                f.write(json.dumps({"image": i, "ids": [int(x) for x in jp + ct], "target_start": len(jp),
                                    "kind": "check", "family": "count", "label": lab}) + "\n")
    # golden prompt: heldout image 0, answer prompt
    with open(os.path.join(args.out, "heldout.jsonl")) as f:
        first = json.loads(f.readline())
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump({"image": first["image"], "ids": first["ids"][: first["target_start"]]}, f)
    print(f"wrote fake data to {args.out} (vocab {len(vocab)})")


if __name__ == "__main__":
    main()
