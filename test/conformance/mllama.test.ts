/**
 * Llama-3.2-Vision (mllama), checkpoint to answers: make_fixtures.py writes a tiny random-weight
 * checkpoint in Hugging Face's layout (bf16 shards + index), exports it with models/export, and
 * computes the processor's tensors for six synthetic images with an independent numpy
 * implementation (fixturegen/mllama_processor.py; Hugging Face itself is not run here). The engine
 * loads the exported folder; its greedy tokens are held to the exporter's own PyTorch forward
 * (models/export/reference.py, no KV cache), and batching, the search and the CLI are checked on it.
 */
import { execFileSync } from "node:child_process";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GenerateRequest } from "../../shared/core/search/types.ts";
import { Engine } from "../../workers/engine/engine.ts";
import type { ItemContext } from "../../workers/engine/item.ts";
import { loadModelFolder } from "../../workers/engine/model-folder.ts";
import { loadProcessor } from "../../workers/engine/processors/index.ts";
import { EngineTokenizer } from "../../workers/engine/tokenizer.ts";
import { runCli } from "../support/cli.ts";
import { type MllamaFixture, makeMllamaFixture } from "./fixtures.ts";

const QUESTION = "How many red objects are there?";
/** Tests that run Python (each run imports torch) or the CLI: room for a loaded machine. */
const SLOW = { timeout: 180_000 };
const STEPS = 10;
/** 1, 2 (right-padded), 3 and 4 tiles, none resized: compared exactly. */
const EXACT = ["one", "two-padded", "three-tall", "four"] as const;
/** Resized (shrunk, enlarged) with PIL's bilinear filter: the numpy version rounds in float, as the engine does, PIL in fixed point. */
const RESIZED = ["wide", "small"] as const;

interface Reference {
  size: [number, number];
  resized: [number, number];
  num_tiles: number;
  pixel_values_dims: number[];
  pixel_values: number[];
  aspect_ratio_ids: number[];
  aspect_ratio_mask: number[];
}

let fixture: MllamaFixture;
let reference: Record<string, Reference>;
const image = (name: string) => readFileSync(path.join(fixture.images, `${name}.png`));

beforeAll(() => {
  fixture = makeMllamaFixture();
  reference = JSON.parse(readFileSync(path.join(fixture.images, "reference.json"), "utf8"));
});
afterAll(() => {
  fixture?.remove();
});

async function processed(name: string) {
  const folder = await loadModelFolder(fixture.dir);
  const tokenizer = new EngineTokenizer(folder);
  const processor = await loadProcessor(folder);
  const prompt = tokenizer.renderPrompt(QUESTION);
  return { tokenizer, prompt, item: await processor.process(name, image(name), prompt) };
}

describe("mllama processor against the numpy reference", () => {
  it.each([...EXACT, ...RESIZED])("%s: tiles, aspect-ratio id and mask, pixel values", async (name) => {
    const { item } = await processed(name);
    const ref = reference[name]!;
    expect(item.pixelValues.dims).toEqual(ref.pixel_values_dims.slice(1));
    expect(item.crossImage).toEqual({
      aspectRatioId: ref.aspect_ratio_ids[0],
      aspectRatioMask: ref.aspect_ratio_mask,
      tiles: ref.num_tiles,
    });
    let max = 0;
    let off = 0;
    item.pixelValues.data.forEach((v, i) => {
      const d = Math.abs(v - ref.pixel_values[i]!);
      max = Math.max(max, d);
      if (d > 1e-5) off++;
    });
    if ((EXACT as readonly string[]).includes(name)) {
      expect(max).toBeLessThan(1e-5);
    } else {
      // At most one level of 255 (0.0150 after the widest normalisation) where a resampled value lands on a half.
      expect(max).toBeLessThan(0.0151);
      expect(off / item.pixelValues.data.length).toBeLessThan(0.01);
    }
  });

  it("covers 1 to 4 tiles, padding tiles and both resize directions", () => {
    expect(EXACT.map((n) => reference[n]!.num_tiles)).toEqual([1, 2, 3, 4]);
    expect(reference["two-padded"]!.resized).toEqual([32, 40]);
    expect(reference.wide!.resized).not.toEqual(reference.wide!.size);
    expect(reference.wide!.resized[1]).toBeLessThan(reference.wide!.size[1]);
    expect(reference.small!.resized).toEqual([26, 32]);
  });

  it("keeps one <|image|> token in the prompt, BOS once, and the text as rendered", async () => {
    const { tokenizer, prompt, item } = await processed("one");
    expect(item.imageTokenCount).toBe(1);
    expect(item.inputIds.filter((id) => id === tokenizer.imageTokenId)).toHaveLength(1);
    expect(tokenizer.decode(item.inputIds)).toBe(prompt);
    expect(prompt.startsWith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|>")).toBe(true);
    expect(item.expand(prompt)).toEqual(item.inputIds);
  });
});

async function engineGreedy(engine: Engine, ctx: ItemContext): Promise<number[]> {
  const sampling = { ...engine.sampling, greedy: true };
  const [out] = await engine.internals.backend.continue(
    ctx,
    [
      {
        ids: ctx.promptIds,
        stop: { kind: "end" },
        maxTokens: STEPS,
        sampleKey: "greedy",
        purpose: "generate",
        cache: true,
        sampling,
      },
    ],
    sampling,
  );
  return out!.tokens;
}

/** The exporter's PyTorch greedy tokens (no KV cache) for each prompt with its image's reference tensors; one Python run. */
function pytorchGreedy(checkpoint: string, prompts: { ids: readonly number[]; name: string }[]): number[][] {
  const requests = prompts.map(({ ids, name }) => {
    const ref = reference[name]!;
    return {
      input_ids: ids,
      pixel_values: ref.pixel_values,
      aspect_ratio_ids: ref.aspect_ratio_ids,
      aspect_ratio_mask: ref.aspect_ratio_mask,
      num_tiles: ref.num_tiles,
      steps: STEPS,
    };
  });
  const out = execFileSync("/usr/bin/python3", ["models/export/reference.py", checkpoint], { input: JSON.stringify(requests) });
  return JSON.parse(out.toString()) as number[][];
}

describe("mllama engine on the exported fixture", () => {
  it(
    "gives the exporter's PyTorch greedy tokens, fp32 and fp16, for 1 to 4 tiles",
    async () => {
      let expected: number[][] | null = null;
      for (const dtype of ["fp32", "fp16"] as const) {
        const engine = await Engine.load(fixture.dir, { dtype: { all: dtype, sessions: {} } });
        try {
          // The decoder returns logits for the last steps only (the runner holds their shape to what it asked for).
          expect(engine.info.contract.logitsToKeep).toBe("logits_to_keep");
          const ctxs = await Promise.all(
            EXACT.map((name) => engine.openItem({ id: name, image: image(name), question: QUESTION })),
          );
          const got: number[][] = [];
          for (const ctx of ctxs) got.push(await engineGreedy(engine, ctx));
          expected ??= pytorchGreedy(
            fixture.checkpoint,
            ctxs.map((ctx, i) => ({ ids: ctx.promptIds, name: EXACT[i]! })),
          ).map((tokens) => (engine.folder.spec.eosTokenIds.includes(tokens.at(-1)!) ? tokens.slice(0, -1) : tokens));
          expect(got, dtype).toEqual(expected);
          // The random model looks at the image: different images, different answers.
          expect(new Set(got.map((t) => t.join(","))).size).toBeGreaterThan(1);
        } finally {
          await engine.close();
        }
      }
    },
    SLOW,
  );

  it(
    "decodes items batched together as alone, encodes each image once, and shares its states with judge prompts",
    async () => {
      const requests = (id: string): GenerateRequest[] =>
        ["a", "b", "c"].map((k) => ({
          id: `${id}-${k}`,
          prefix: "",
          stop: { kind: "end" },
          maxTokens: 8,
          sampleKey: `${id}-${k}`,
        }));
      const sampling = { temperature: 1, topP: 1, topK: 0 };
      const batched = await Engine.load(fixture.dir, { maxBatch: 16 });
      const alone = await Engine.load(fixture.dir, { maxBatch: 1 });
      const reference = await Engine.load(fixture.dir, { reference: true });
      try {
        const run = async (engine: Engine, together: boolean) => {
          const ctxs = await Promise.all(
            EXACT.map((name) => engine.openItem({ id: name, image: image(name), question: QUESTION })),
          );
          const go = (ctx: ItemContext) => engine.generate(ctx, requests(ctx.id), sampling);
          const out = together ? await Promise.all(ctxs.map(go)) : [];
          if (!together) for (const ctx of ctxs) out.push(await go(ctx));
          await Promise.all(
            ctxs.map((ctx) =>
              engine.judge(
                ctx,
                [{ id: `${ctx.id}-j`, kind: "compare", first: "one", second: "two", template: "SUMMARY", hint: "" }],
                "score",
              ),
            ),
          );
          for (const ctx of ctxs) engine.closeItem(ctx);
          return out.map((r) => r.map((x) => x.text));
        };
        const texts = await run(batched, true);
        expect(texts).toEqual(await run(alone, false));
        // The paper's pattern (image and prompt encoded again for every candidate) samples the same streams.
        expect(texts).toEqual(await run(reference, false));
        // Closing the items gave back every store: the items' cross states and the KV of their sequences.
        for (const engine of [batched, alone, reference]) expect(engine.kvMemory().stores).toBe(0);
        const counters = batched.counters();
        expect(counters.visionCalls).toBe(EXACT.length);
        expect(counters.itemsOpened).toBe(EXACT.length);
        // Rows of several items shared decoder calls (the gathered-states path), not one call per item.
        expect(counters.decoderCalls).toBeLessThan(alone.counters().decoderCalls);
      } finally {
        await Promise.all([batched.close(), alone.close(), reference.close()]);
      }
    },
    SLOW,
  );

  it(
    "runs `stagebeam ask --strategy stage --beam 2` to the end",
    async () => {
      const out = await runCli([
        "ask",
        "--model",
        fixture.dir,
        "--image",
        path.join(fixture.images, "wide.png"),
        "--question",
        QUESTION,
        "--strategy",
        "stage",
        "--beam",
        "2",
        "--max-stage-tokens",
        "6",
        "--json",
      ]);
      expect(out.code, out.stderr).toBe(0);
      const steps = (JSON.parse(out.stdout) as { result: { steps: { label: string; candidates: unknown[] }[] } }).result.steps;
      expect(steps.map((s) => s.label)).toEqual(["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"]);
      for (const s of steps) expect(s.candidates).toHaveLength(2);
    },
    SLOW,
  );
});

describe("model check and the exporter's checkpoint checks", () => {
  it(
    "model check reports the family, tiles and cross-attention layers; on the checkpoint it names the export command",
    async () => {
      const ok = await runCli(["model", "check", fixture.dir, "--json"]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({
        ok: true,
        family: "mllama",
        cross: { maxTiles: 4, tileSize: 32, crossAttentionLayers: [1, 3], decoderLayers: 5 },
      });
      const raw = await runCli(["model", "check", fixture.checkpoint]);
      expect(raw.code).toBe(2);
      expect(raw.stderr).toContain(`stagebeam model export ${fixture.checkpoint} --out ${fixture.checkpoint}-onnx`);
    },
    SLOW,
  );

  it(
    "reads the newer naming (model.language_model…) to the same model, and refuses an unexpected or missing tensor by name",
    () => {
      const renamed = `${fixture.checkpoint}-renamed`;
      cpSync(fixture.checkpoint, renamed, { recursive: true });
      const index = path.join(renamed, "model.safetensors.index.json");
      const map = JSON.parse(readFileSync(index, "utf8")) as { weight_map: Record<string, string> };
      const rename = (name: string) =>
        name
          .replace(/^language_model\.model\./, "model.language_model.")
          .replace(/^language_model\.lm_head\./, "lm_head.")
          .replace(/^vision_model\./, "model.vision_model.")
          .replace(/^multi_modal_projector\./, "model.multi_modal_projector.");
      // Rewrite each shard's header with the new names (the data is untouched).
      for (const shard of new Set(Object.values(map.weight_map))) {
        const file = path.join(renamed, shard);
        const bytes = readFileSync(file);
        const n = Number(bytes.readBigUInt64LE(0));
        const header = JSON.parse(bytes.subarray(8, 8 + n).toString()) as Record<string, unknown>;
        const renamedHeader = Object.fromEntries(
          Object.entries(header).map(([k, v]) => [k === "__metadata__" ? k : rename(k), v]),
        );
        const text = Buffer.from(JSON.stringify(renamedHeader).padEnd(n + 64, " "));
        const head = Buffer.alloc(8);
        head.writeBigUInt64LE(BigInt(text.length));
        writeFileSync(file, Buffer.concat([head, text, bytes.subarray(8 + n)]));
      }
      map.weight_map = Object.fromEntries(Object.entries(map.weight_map).map(([k, v]) => [rename(k), v]));
      writeFileSync(index, JSON.stringify(map));
      // Any prompt with the image token: the same weights give the same tokens.
      const ask = (checkpoint: string) => pytorchGreedy(checkpoint, [{ ids: [352, 359, 5, 6], name: "one" }]);
      expect(ask(renamed)).toEqual(ask(fixture.checkpoint));

      const exporter = (checkpoint: string) => {
        try {
          execFileSync("/usr/bin/python3", ["models/export/export.py", checkpoint, "--out", `${checkpoint}-out`], {
            stdio: "pipe",
          });
          return "";
        } catch (err) {
          return String((err as { stderr: Buffer }).stderr);
        }
      };
      // An extra tensor in the index's first shard, then a tensor the architecture needs taken out.
      const first = path.join(renamed, Object.values(map.weight_map)[0]!);
      const bytes = readFileSync(first);
      const n = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + n).toString()) as Record<string, { data_offsets: number[] }>;
      const some = Object.keys(header).find((k) => k !== "__metadata__")!;
      const write = (h: Record<string, unknown>) => {
        const text = Buffer.from(JSON.stringify(h).padEnd(n + 64, " "));
        const head = Buffer.alloc(8);
        head.writeBigUInt64LE(BigInt(text.length));
        writeFileSync(first, Buffer.concat([head, text, bytes.subarray(8 + n)]));
      };
      write({ ...header, "model.vision_model.extra_head.weight": header[some] });
      expect(exporter(renamed)).toMatch(
        /unexpected tensor vision_model\.extra_head\.weight in model-0000\d-of-00002\.safetensors/,
      );
      const { [some]: _dropped, ...rest } = header;
      write(rest);
      expect(exporter(renamed)).toContain(
        `missing tensor ${some
          .replace(/^model\.vision_model\./, "vision_model.")
          .replace(/^model\.language_model\./, "language_model.model.")
          .replace(/^lm_head\./, "language_model.lm_head.")
          .replace(/^model\.multi_modal_projector\./, "multi_modal_projector.")}`,
      );
    },
    SLOW,
  );
});
