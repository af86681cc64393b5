/**
 * KV on the device vs KV through host memory, side by side in one run on whatever device the
 * machine's WebGPU provider finds (a GPU through its Vulkan driver; Mesa's software driver on a
 * CPU-only machine). Run through scripts/bench-device.sh (`npm run bench:device`), which checks
 * first that Node and the Vulkan loader are there.
 *
 *   npm run bench:device -- [--models bundled,bench] [--bench-model .work/bench-model] [--batches 1,8,16,32]
 *                           [--positions 256,1000] [--steps 8] [--items 6] [--beam 4] [--max-stage-tokens 24]
 *                           [--repeats 2] [--provider webgpu] [--no-search]
 *
 * 1. Decode steps on each model at each batch size and past length: ms a step and tokens/s with
 *    the KV through host memory (what every provider but WebGPU does: past uploaded, present
 *    downloaded, each call) and on the device; the bytes that cross host↔device a step.
 * 2. Prefill of the first --positions at batch 1, both ways.
 * 3. A stage-level beam search N=--beam on --items generated items, score judge: device KV, host
 *    KV (same trace required), each --repeats times alternating, the fastest counting, and the
 *    reference work pattern (device KV) once.
 *
 * The realistic-shape model is `npm run bench:model`'s (.work/bench-model; torch is needed to
 * write it, so on a GPU machine without it copy the folder there); missing, it is skipped, said.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import ort from "onnxruntime-node";
import { runSearch } from "../../shared/core/search/index.ts";
import { paramsFor, parseSearchSettings } from "../../shared/core/search/settings.ts";
import type { ExecutionProvider } from "../../shared/io/config.ts";
import { readEvalSet } from "../../shared/io/eval-set.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { Engine } from "../../workers/engine/index.ts";
import { allocFloat, bytesPerPosition, type KvStore, type KvView } from "../../workers/engine/kv.ts";
import { HostKvSpace } from "../../workers/engine/kv-host.ts";
import { BUNDLED_MODEL } from "./decode.ts";

const { values } = parseArgs({
  options: {
    models: { type: "string", default: "bundled,bench" },
    "bench-model": { type: "string", default: path.resolve(import.meta.dirname, "../../.work/bench-model") },
    batches: { type: "string", default: "1,8,16,32" },
    positions: { type: "string", default: "256,1000" },
    steps: { type: "string", default: "8" },
    items: { type: "string", default: "6" },
    beam: { type: "string", default: "4" },
    "max-stage-tokens": { type: "string", default: "24" },
    provider: { type: "string", default: "webgpu" },
    search: { type: "boolean", default: true },
    repeats: { type: "string", default: "2" },
  },
  allowNegative: true,
});
const list = (s: string) => s.split(",").map((x) => Number(x.trim()));
const batches = list(values.batches);
const positions = list(values.positions);
const steps = Number(values.steps);
const provider = values.provider as ExecutionProvider;
process.env.XDG_RUNTIME_DIR ??= await mkdtemp(path.join(tmpdir(), "stagebeam-xdg-"));

const load = (dir: string, kvOnDevice: boolean, extra = {}) =>
  Engine.load(dir, { executionProviders: [provider], kvOnDevice, maxBatch: Math.max(32, ...batches), ...extra });

const fmt = (n: number, digits = 1) => n.toFixed(digits);
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 3 : 1)} MiB`;
function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows)
    console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "));
}

/** A batch cache [rows, heads, past, headDim] of small random values, in the engine's KV space. */
async function syntheticCache(engine: Engine, rows: number, past: number): Promise<KvStore> {
  const { runner } = engine.internals;
  const { layers, heads, headDim, type } = runner.layout;
  const host = new HostKvSpace(type);
  const dims = [rows, heads, past, headDim] as const;
  const data = Array.from({ length: 2 * layers }, () => {
    const a = allocFloat(type, rows * heads * past * headDim);
    // float16 bit patterns of small values (0x2000-0x2fff), or small floats.
    for (let i = 0; i < a.length; i++) a[i] = type === "float16" ? 0x2000 + ((i * 2654435761) >>> 20) : ((i % 97) - 48) / 480;
    return a;
  });
  const store = host.wrap(
    data,
    data.map(() => dims),
  );
  if (runner.kv.place === "host") return store;
  // Uploaded once (a CPU tensor fed to the device space's gather), then on the device.
  const staged = runner.kv.adopt(store.tensors);
  const rowsOf: KvView[] = Array.from({ length: rows }, (_, row) => ({ store: staged, row, start: 0, length: past }));
  try {
    return await runner.kv.gather(rowsOf, past);
  } finally {
    staged.release();
  }
}

/** ms per decode step at `rows` × `past`, the present fed back as the next past. */
async function decodeSteps(engine: Engine, rows: number, past: number): Promise<number> {
  const { runner } = engine.internals;
  let cache = await syntheticCache(engine, rows, past);
  let length = past;
  const embeds = await runner.embedIds(Array.from({ length: rows }, (_, i) => 20 + (i % 100)));
  let timed = 0;
  try {
    for (let s = 0; s <= steps; s++) {
      const t0 = performance.now();
      const out = await runner.forward({
        rows,
        steps: 1,
        past: length,
        embeds,
        mask: new BigInt64Array(rows * (length + 1)).fill(1n),
        positions: new BigInt64Array(rows).fill(BigInt(length)),
        cache,
      });
      cache.release();
      cache = out.present;
      length++;
      if (s > 0) timed += performance.now() - t0; // the first step warms up the shapes
    }
  } finally {
    cache.release();
  }
  return timed / steps;
}

/** Bytes a decode step moves between host and device: inputs, logits, and the KV both ways when it lives on the host. */
function stepBytes(engine: Engine, rows: number, past: number, kvOnDevice: boolean): number {
  const { runner } = engine.internals;
  const floatBytes = runner.contract.embedType === "float16" ? 2 : 4;
  const inputs = rows * runner.hidden * floatBytes + 8 * rows * (past + 1) + 8 * rows * runner.contract.positionAxes;
  const logits = rows * runner.vocab * (runner.contract.logitsType === "float16" ? 2 : 4);
  const kv = kvOnDevice ? 0 : rows * (2 * past + 1) * bytesPerPosition(runner.layout);
  return inputs + logits + kv;
}

async function prefill(engine: Engine, tokens: number): Promise<number> {
  const { runner } = engine.internals;
  const embeds = await runner.embedIds(Array.from({ length: tokens }, (_, i) => 20 + (i % 100)));
  const run = async () => {
    const t0 = performance.now();
    const out = await runner.forward({
      rows: 1,
      steps: tokens,
      past: 0,
      embeds,
      mask: new BigInt64Array(tokens).fill(1n),
      positions: BigInt64Array.from({ length: tokens }, (_, i) => BigInt(i)),
      cache: null,
      keepLogits: 1,
    });
    out.present.release();
    return performance.now() - t0;
  };
  await run();
  return run();
}

async function modelSection(label: string, dir: string): Promise<void> {
  const host = await load(dir, false);
  const device = await load(dir, true);
  const { runner } = device.internals;
  const l = runner.layout;
  console.log(
    `\n${label}: ${dir}\n  ${l.layers} layers, ${l.heads} KV heads × ${l.headDim}, KV ${l.type} (${fmt(bytesPerPosition(l) / 1024)} KiB a position), vocab ${runner.vocab}; sessions: ${device.runtime.summary}; host-KV engine: ${host.runtime.summary}`,
  );
  const rows: string[][] = [
    [
      "batch × past",
      "host KV ms/step",
      "device KV ms/step",
      "speed-up",
      "host KV tok/s",
      "device KV tok/s",
      "host↔device a step: host KV",
      "device KV",
    ],
  ];
  for (const past of positions) {
    for (const b of batches) {
      const h = await decodeSteps(host, b, past);
      const d = await decodeSteps(device, b, past);
      rows.push([
        `${b} × ${past}`,
        fmt(h),
        fmt(d),
        `${fmt(h / d, 2)}×`,
        fmt((1000 * b) / h, 0),
        fmt((1000 * b) / d, 0),
        mib(stepBytes(host, b, past, false)),
        mib(stepBytes(device, b, past, true)),
      ]);
    }
  }
  table(rows);
  const p = positions[0]!;
  const [ph, pd] = [await prefill(host, p), await prefill(device, p)];
  console.log(`  prefill of ${p} positions, batch 1: host KV ${fmt(ph)} ms, device KV ${fmt(pd)} ms (${fmt(ph / pd, 2)}×)`);
  console.log(`  device KV held after the runs: ${device.kvMemory().bytes} bytes in ${device.kvMemory().stores} stores`);
  await Promise.all([host.close(), device.close()]);
}

async function searchSection(dir: string): Promise<void> {
  const itemCount = Number(values.items);
  const beam = Number(values.beam);
  const setDir = await mkdtemp(path.join(tmpdir(), "bench-device-"));
  await writeSceneSet(setDir, { count: itemCount, seed: 3000 });
  const set = (await readEvalSet(setDir)).items;
  const images = await Promise.all(set.map((it) => readFile(it.imagePath)));
  const settings = (judgeMode: "score" | "generate") =>
    parseSearchSettings({ strategy: "stage", beam, seed: 1, judgeMode, maxStageTokens: Number(values["max-stage-tokens"]) });

  const searchAll = async (engine: Engine, judgeMode: "score" | "generate", together: boolean) => {
    const one = async (i: number) => {
      const ctx = await engine.openItem({ id: `item${i}`, image: images[i]!, question: set[i]!.question });
      try {
        return await runSearch(paramsFor(ctx.id, settings(judgeMode)), {
          generate: (r) => engine.generate(ctx, r),
          judge: (r) => engine.judge(ctx, r),
        });
      } finally {
        engine.closeItem(ctx);
      }
    };
    engine.resetCounters();
    const t0 = performance.now();
    const results = [];
    if (together) results.push(...(await Promise.all(set.map((_, i) => one(i)))));
    else for (let i = 0; i < set.length; i++) results.push(await one(i));
    const seconds = (performance.now() - t0) / 1000;
    const c = engine.counters();
    return { seconds, results, decodeSteps: c.decodeSteps, tokens: c.generatedTokens };
  };
  // Shaders are compiled on first use (and Dawn may share them between sessions), so device and
  // host KV run --repeats times, alternating, and the fastest run of each counts.
  const engines = {
    device: await load(dir, true),
    host: await load(dir, false),
    reference: await load(dir, true, { reference: true }),
  };
  type Run = Awaited<ReturnType<typeof searchAll>> & { label: string };
  const best: Partial<Record<keyof typeof engines, Run>> = {};
  const labels = { device: "stagebeam, device KV", host: "stagebeam, host KV", reference: "reference pattern, device KV" };
  const repeats = Number(values.repeats);
  for (let r = 0; r < repeats; r++) {
    // The reference pattern, the slowest by far, runs once, last (its shaders compiled by then).
    for (const k of r === repeats - 1 ? (["device", "host", "reference"] as const) : (["device", "host"] as const)) {
      const run = await searchAll(engines[k], k === "reference" ? "generate" : "score", k !== "reference");
      if (best[k] === undefined || run.seconds < best[k].seconds) best[k] = { ...run, label: labels[k] };
    }
  }
  await Promise.all(Object.values(engines).map((e) => e.close()));
  const { device, host, reference } = best as Record<keyof typeof engines, Run>;
  const same = JSON.stringify(device.results, round) === JSON.stringify(host.results, round);

  console.log(
    `\nstage-level beam search N=${beam}, score judge, ${itemCount} items, ${values["max-stage-tokens"]} tokens a stage candidate at most, on ${dir}`,
  );
  table([
    ["", "wall s", "decode steps", "generated tok", "items/s"],
    ...[device, host, reference].map((r) => [
      r.label,
      fmt(r.seconds),
      String(r.decodeSteps),
      String(r.tokens),
      fmt(itemCount / r.seconds, 3),
    ]),
  ]);
  console.log(
    `device KV vs host KV: ${fmt(host.seconds / device.seconds, 2)}× faster (target ≥ 4× on software Vulkan); same trace: ${same}`,
  );
  console.log(
    `device KV vs the reference pattern: ${fmt(reference.seconds / device.seconds, 2)}× faster (target ≥ 10× on a GPU, realistic-shape model)`,
  );
  if (!same) {
    console.log(
      `first difference: ${firstDifference(JSON.parse(JSON.stringify(device.results, round)), JSON.parse(JSON.stringify(host.results, round)))}`,
    );
    process.exitCode = 1;
  }
}

/** Where two JSON values first differ, as a path and both values. */
function firstDifference(a: unknown, b: unknown, at = "results"): string | null {
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) {
    return a === b ? null : `${at}: device KV ${JSON.stringify(a)}, host KV ${JSON.stringify(b)}`;
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${at}.${k}`);
    if (d !== null) return d;
  }
  return null;
}

/** Scores in traces compared to 4 decimals (the providers' kernels differ in the last bits). */
function round(_key: string, v: unknown): unknown {
  return typeof v === "number" && !Number.isInteger(v) ? Number(v.toFixed(4)) : v;
}

// ---------------------------------------------------------------------------

const probe = await load(BUNDLED_MODEL, true);
console.log(`provider ${provider}: ${probe.runtime.summary}; ORT ${ort.env.versions.common}`);
if (probe.info.kvPlace !== "device") {
  console.error(
    `bench:device needs the ${provider} provider with its KV on the device; it fell back (${JSON.stringify(probe.info.providerFailures)})`,
  );
  process.exit(2);
}
await probe.close();

const models: [string, string][] = [];
for (const m of values.models.split(",").map((s) => s.trim())) {
  if (m === "bundled") models.push(["bundled model", BUNDLED_MODEL]);
  else if (m === "bench") {
    const dir = path.resolve(values["bench-model"]);
    if (existsSync(path.join(dir, "config.json"))) models.push(["realistic-shape model", dir]);
    else
      console.log(`realistic-shape model: none at ${dir} (make it with npm run bench:model where torch is installed); skipped`);
  } else throw new Error(`--models: unknown model ${m}; expected bundled and/or bench`);
}
for (const [label, dir] of models) await modelSection(label, dir);
if (values.search) await searchSection(models.at(-1)?.[1] ?? BUNDLED_MODEL);
