/**
 * One row of `npm run bench:engine`, in a process of its own so that its peak RSS is its own:
 * a search over the item set (stagebeam's or the reference work pattern) or a decode
 * throughput measurement. The parent (engine.ts) forks this file with the row as JSON and gets
 * the measurement back as a message.
 */
import { fork } from "node:child_process";
import { readEvalSet } from "../../shared/io/eval-set.ts";
import { Engine, Verifier, type EngineCounters } from "../../workers/engine/index.ts";
import { evaluate, type EvalOutcome } from "../../apps/cli/commands/eval.ts";
import { sumCounters } from "../../apps/cli/commands/local-engine.ts";
import { searchSettings } from "../../apps/cli/commands/search-options.ts";
import { measureDecode, type DecodeRun } from "./decode.ts";
import { timePhases, type PhaseSeconds } from "./phases.ts";

export interface SearchRow {
  kind: "search";
  label: string;
  model: string;
  setDir: string;
  reference: boolean;
  judge: "score" | "generate" | "verifier";
  /** The verifier folder of a `verifier` row. */
  verifier?: string;
  concurrency: number;
  beam: number;
  seed: number;
  /** Judge equal texts once (the search's default); the reference pattern judges every candidate. */
  merge: boolean;
  maxStageTokens?: number;
  /** The engine's judgeMaxTokens: the token cap of a generated judge answer. */
  judgeMaxTokens?: number;
}

export interface DecodeRow {
  kind: "decode";
  label: string;
  model: string;
  maxBatch: number;
  candidates: number;
  maxTokens: number;
  repeats: number;
}

/** The model as the engine sees it, for the report's heading. */
export interface ModelShape {
  layers: number;
  hidden: number | null;
  kvHeads: number;
  headDim: number;
  vocab: number;
  tokenizerVocab: number;
  /** Null when the count depends on the image. */
  imageTokens: number | null;
  kvType: string;
  embedType: string;
  embeddingTable: boolean;
  kvBytesPerToken: number;
}

export interface SearchMeasurement {
  kind: "search";
  label: string;
  items: number;
  outcome: EvalOutcome;
  counters: EngineCounters;
  phases: PhaseSeconds;
  shape: ModelShape;
  peakRssMB: number;
  /** This process's CPU seconds (all threads) while the items ran. */
  cpuSeconds: number;
  /** Batched decode steps, and the sequences they carried (the engine's decodeStep observer). */
  decodeSteps: number;
  decodeRows: number;
}

export interface DecodeMeasurement extends DecodeRun {
  kind: "decode";
  peakRssMB: number;
}

const peakRssMB = () => process.resourceUsage().maxRSS / 1024;

function shapeOf(engine: Engine): ModelShape {
  const spec = engine.folder.spec;
  return {
    layers: spec.numLayers,
    hidden: engine.info.hiddenSize,
    kvHeads: spec.numKvHeads,
    headDim: spec.headDim,
    vocab: engine.info.vocabSize,
    tokenizerVocab: engine.tokenizer.vocabSize,
    imageTokens: spec.imageSeqLength,
    kvType: engine.info.contract.kvType,
    embedType: engine.info.contract.embedType,
    embeddingTable: engine.info.embeddingTable,
    kvBytesPerToken: engine.info.kvBytesPerToken,
  };
}

async function measureSearch(row: SearchRow): Promise<SearchMeasurement> {
  const { items } = await readEvalSet(row.setDir);
  const decode = { steps: 0, rows: 0 };
  const engine = await Engine.load(row.model, {
    observer: {
      decodeStep: (rows: number) => {
        decode.steps++;
        decode.rows += rows;
      },
    },
    reference: row.reference,
    ...(row.judgeMaxTokens !== undefined ? { judgeMaxTokens: row.judgeMaxTokens } : {}),
  });
  let verifier: Verifier | null = null;
  try {
    if (row.judge === "verifier") {
      if (row.verifier === undefined) throw new Error(`bench row "${row.label}": judge verifier needs a verifier folder`);
      verifier = await Verifier.load(row.verifier);
    }
    const phases = timePhases(engine.internals.runner);
    const settings = searchSettings({
      strategy: "stage",
      beam: row.beam,
      judge: row.judge,
      seed: row.seed,
      merge: row.merge,
      ...(row.maxStageTokens !== undefined ? { maxStageTokens: row.maxStageTokens } : {}),
    });
    const cpu0 = process.cpuUsage();
    const outcome = await evaluate(engine, items, settings, row.concurrency, () => {}, verifier);
    const cpu = process.cpuUsage(cpu0);
    return {
      kind: "search",
      label: row.label,
      items: items.length,
      outcome: { ...outcome, label: row.label },
      // The verifier's decoder work counts with the policy's; its session time shows as "other".
      counters: sumCounters(engine, verifier),
      phases,
      shape: shapeOf(engine),
      peakRssMB: peakRssMB(),
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      decodeSteps: decode.steps,
      decodeRows: decode.rows,
    };
  } finally {
    await verifier?.close();
    await engine.close();
  }
}

async function measure(row: SearchRow | DecodeRow): Promise<SearchMeasurement | DecodeMeasurement> {
  if (row.kind === "search") return measureSearch(row);
  const run = await measureDecode(
    row.model,
    row.label,
    { maxBatch: row.maxBatch },
    { candidates: row.candidates, maxTokens: row.maxTokens, repeats: row.repeats },
  );
  return { kind: "decode", ...run, peakRssMB: peakRssMB() };
}

/** Runs the row in a child process and resolves with its measurement. */
export function measureInChild<R extends SearchRow | DecodeRow>(
  row: R,
): Promise<R extends SearchRow ? SearchMeasurement : DecodeMeasurement> {
  return new Promise((resolve, reject) => {
    const child = fork(import.meta.filename, [JSON.stringify(row)]);
    let result: unknown = null;
    child.on("message", (m) => {
      result = m;
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code === 0 && result !== null) resolve(result as R extends SearchRow ? SearchMeasurement : DecodeMeasurement);
      else reject(new Error(`bench row "${row.label}" exited with code ${code}`));
    });
  });
}

if (import.meta.filename === process.argv[1] && process.send !== undefined) {
  const result = await measure(JSON.parse(process.argv[2]!) as SearchRow | DecodeRow);
  process.send(result, () => process.exit(0));
}
