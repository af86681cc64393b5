/**
 * The engine's public API: load a model folder, open items (image + question), generate
 * candidates and judge them, count the work done.
 *
 *   const engine = await Engine.load(dir, { executionProviders: ["cuda", "cpu"] });
 *   const ctx = await engine.openItem({ id, image, question });
 *   const results = await engine.generate(ctx, requests);
 *   const verdicts = await engine.judge(ctx, judgeRequests);
 *   engine.closeItem(ctx);
 *
 * Any number of items may be in flight at once (concurrent async callers): their decoder work
 * shares batched calls. No Redis or S3 in here.
 */
import type { z } from "zod";
import {
  GenerateRequestSchema,
  JudgeRequestSchema,
  type GenerateRequest,
  type GenerateResult,
  type JudgeRequest,
  type JudgeResult,
} from "../../shared/core/search/types.ts";
import type { Backend, ContinuationResult } from "./backend.ts";
import { EngineRequestError, ItemInputError } from "./errors.ts";
import { ItemContext } from "./item.ts";
import { PAIRWISE_JUDGE_MODES, type PairwiseJudgeMode } from "../../shared/core/search/settings.ts";
import type { Judge } from "./judge.ts";
import type { ModelFolder } from "./model-folder.ts";
import type { Processor } from "./processors/processor.ts";
import { zeroCounters, type EngineCounters } from "./counters.ts";
import type { KvPlace } from "./kv.ts";
import type { ModelRunner } from "./runner.ts";
import { resolveSampling, type SamplingParams } from "./sampler.ts";
import type { Scheduler } from "./scheduler.ts";
import type { EngineTokenizer } from "./tokenizer.ts";

import { assembleEngine, type EngineInfo, type EngineOptions, type EngineParts } from "./assemble.ts";

export type { EngineCounters } from "./counters.ts";
export type { EngineInfo, EngineLogger, EngineOptions } from "./assemble.ts";
export type { SamplingParams } from "./sampler.ts";
export type { JudgeMode, PairwiseJudgeMode } from "../../shared/core/search/settings.ts";
export type { EngineObserver } from "./batch-executor.ts";
export type { ItemContext } from "./item.ts";

export interface OpenItemInput {
  id: string;
  /** The image file's bytes (PNG, JPEG, …). */
  image: Uint8Array;
  question: string;
  /** A system message before the user turn (an OpenAI batch line's), passed to the chat template. */
  system?: string;
}

export class Engine {
  readonly info: EngineInfo;
  readonly folder: ModelFolder;
  private readonly processor: Processor;
  readonly tokenizer: EngineTokenizer;
  /** Sampling used when a call gives none (generation_config.json + options.sampling). */
  readonly sampling: SamplingParams;
  private readonly runner: ModelRunner;
  private readonly scheduler: Scheduler;
  private readonly backend: Backend;
  private readonly judgeWith: Judge;
  private readonly counterState: EngineCounters;
  private readonly contextLength: number;
  private readonly prefixCacheEntries: number;
  private readonly defaultJudgeMode: PairwiseJudgeMode;
  private readonly openItems = new Set<ItemContext>();
  private runtimeView: EngineRuntime | undefined;

  private constructor(parts: EngineParts) {
    this.info = parts.info;
    this.folder = parts.folder;
    this.processor = parts.processor;
    this.tokenizer = parts.tokenizer;
    this.sampling = parts.sampling;
    this.runner = parts.runner;
    this.scheduler = parts.scheduler;
    this.backend = parts.backend;
    this.judgeWith = parts.judge;
    this.counterState = parts.counters;
    this.contextLength = parts.info.contextLength ?? Infinity;
    this.prefixCacheEntries = parts.prefixCacheEntries;
    this.defaultJudgeMode = parts.judgeMode;
  }

  /** Loads and validates a model folder and creates its sessions. */
  static async load(dir: string, options: EngineOptions = {}): Promise<Engine> {
    return new Engine(await assembleEngine(dir, options));
  }

  /**
   * Runs the family's processor on the image and the rendered prompt, and (unless in reference
   * mode) encodes the image and the prompt's KV once. Throws an ItemInputError naming the item
   * and field when the image is unusable, the vision encoder's features do not match the prompt's
   * image tokens, or the prompt does not fit the context window.
   */
  async openItem(input: OpenItemInput): Promise<ItemContext> {
    const id = typeof input?.id === "string" && input.id !== "" ? input.id : null;
    if (id === null) throw new EngineRequestError(`openItem: id must be a non-empty string, got ${JSON.stringify(input?.id)}`);
    if (typeof input.question !== "string" || input.question.trim() === "") {
      throw new ItemInputError(id, "question", `expected a non-empty string, got ${JSON.stringify(input.question)}`);
    }
    const processed = await this.processor.process(id, input.image, this.tokenizer.renderPrompt(input.question, input.system));
    const promptIds = processed.inputIds;
    if (processed.imageTokenCount === 0) {
      throw new ItemInputError(
        id,
        "question",
        `the prompt holds no image token ${this.folder.tokenizer.imageToken} (id ${processed.imageTokenId}); expected the chat template to place the image`,
      );
    }
    if (promptIds.length + 1 > this.contextLength) {
      throw new ItemInputError(
        id,
        "question",
        `the prompt is ${promptIds.length} tokens (${processed.imageTokenCount} of them the image); the model's context window is ${this.contextLength}, which leaves no room for an answer`,
      );
    }
    const ctx = new ItemContext(id, input.question, processed, this.prefixCacheEntries);
    await this.backend.open(ctx);
    this.runner.counters.itemsOpened++;
    this.openItems.add(ctx);
    return ctx;
  }

  /** Releases an item's cached image features and KV. */
  closeItem(ctx: ItemContext): void {
    ctx.closed = true;
    ctx.features = null;
    ctx.decoderInputs?.store.release();
    ctx.decoderInputs = null;
    ctx.vision = null;
    ctx.cache.close();
    this.openItems.delete(ctx);
  }

  private checkOpen(ctx: ItemContext, what: string): void {
    if (!(ctx instanceof ItemContext)) throw new EngineRequestError(`${what}: expected an item context from openItem`);
    if (ctx.closed) throw new EngineRequestError(`${what}: item ${ctx.id} is closed`);
  }

  /**
   * Samples a continuation of each request's prefix (the prompt is the item's). Results come in
   * request order; each depends only on its prefix, stop rule, maxTokens, sample key and the
   * sampling parameters, not on which other requests or items share the batch.
   */
  async generate(
    ctx: ItemContext,
    requests: readonly GenerateRequest[],
    sampling?: Partial<SamplingParams>,
  ): Promise<GenerateResult[]> {
    this.checkOpen(ctx, "generate");
    const params = resolveSampling(sampling, this.sampling);
    const parsed = parseRequests(GenerateRequestSchema, requests, "generate");
    const prefixIds = new Map<string, number[]>();
    for (const r of parsed) {
      if (prefixIds.has(r.prefix)) continue;
      const ids = r.prefix === "" ? [] : this.tokenizer.encode(r.prefix);
      if (ids.includes(this.tokenizer.imageTokenId)) {
        throw new EngineRequestError(`generate request ${r.id}: prefix contains the image token; expected assistant text only`);
      }
      prefixIds.set(r.prefix, [...ctx.promptIds, ...ids]);
    }
    const results: (GenerateResult | null)[] = parsed.map(() => null);
    const runnable: number[] = [];
    parsed.forEach((r, i) => {
      const ids = prefixIds.get(r.prefix)!;
      if (ids.length + 1 > this.contextLength) {
        results[i] = { id: r.id, text: "", tokens: 0, truncated: true, finished: false, detail: { finish: "context" } };
      } else {
        runnable.push(i);
      }
    });
    const outs = await this.backend.continue(
      ctx,
      runnable.map((i) => {
        const r = parsed[i]!;
        return {
          ids: prefixIds.get(r.prefix)!,
          stop: r.stop,
          maxTokens: r.maxTokens,
          sampleKey: r.sampleKey,
          purpose: "generate" as const,
          cache: true,
          ...(ownSampling(r, params) ?? {}),
        };
      }),
      params,
    );
    runnable.forEach((i, j) => {
      results[i] = toGenerateResult(parsed[i]!, outs[j]!);
    });
    return results as GenerateResult[];
  }

  /**
   * Judges comparisons and reasoning checks of one item; all prompts of the call are batched.
   * Each request is answered by the judge it names (`mode`, as a search's requests do), else by
   * `mode`, else by the model's default.
   */
  async judge(ctx: ItemContext, requests: readonly JudgeRequest[], mode?: PairwiseJudgeMode): Promise<JudgeResult[]> {
    this.checkOpen(ctx, "judge");
    const m = mode ?? this.defaultJudgeMode;
    if (!PAIRWISE_JUDGE_MODES.includes(m))
      throw new EngineRequestError(`judge: mode must be one of ${PAIRWISE_JUDGE_MODES.join(", ")}, got ${JSON.stringify(m)}`);
    const parsed = parseRequests(JudgeRequestSchema, requests, "judge");
    const byMode = new Map<PairwiseJudgeMode, number[]>();
    for (const [i, r] of parsed.entries()) {
      const judgeMode = r.mode ?? m;
      byMode.set(judgeMode, [...(byMode.get(judgeMode) ?? []), i]);
    }
    const results: JudgeResult[] = new Array(parsed.length);
    await Promise.all(
      [...byMode].map(async ([judgeMode, at]) => {
        const answers = await this.judgeWith.judge(
          ctx,
          at.map((i) => parsed[i]!),
          judgeMode,
        );
        at.forEach((i, j) => {
          results[i] = answers[j]!;
        });
      }),
    );
    return results;
  }

  /**
   * Teacher-forced logits of assistant texts: for each sequence, the item's prompt followed by
   * `ids`, run in one forward pass (the prompt's KV and any prefix the sequences share reused),
   * and the logits at each index of `at` (into `ids`) read out. What a verifier scores from.
   */
  async readLogits(
    ctx: ItemContext,
    sequences: readonly { ids: readonly number[]; at: readonly number[] }[],
  ): Promise<Float32Array[][]> {
    this.checkOpen(ctx, "readLogits");
    const prompt = ctx.promptIds.length;
    return this.backend.positionLogits(
      ctx,
      sequences.map((s) => ({ ids: [...ctx.promptIds, ...s.ids], at: s.at.map((t) => prompt + t) })),
    );
  }

  /** Tokens of the item's prompt plus `assistantTokens` that still fit the context window. */
  fits(ctx: ItemContext, assistantTokens: number): boolean {
    return ctx.promptIds.length + assistantTokens <= this.contextLength;
  }

  /**
   * @internal The moving parts, for tests and benchmarks that check the numerics of the
   * batcher itself. Not part of the API.
   */
  get internals(): { runner: ModelRunner; scheduler: Scheduler; backend: Backend } {
    return { runner: this.runner, scheduler: this.scheduler, backend: this.backend };
  }

  /** A snapshot of the work counters. */
  counters(): EngineCounters {
    return { ...this.counterState };
  }

  resetCounters(): void {
    Object.assign(this.counterState, zeroCounters());
  }

  /** Items opened and not closed. */
  get openItemCount(): number {
    return this.openItems.size;
  }

  /** What this engine really runs on; one object per engine (a verifier over this engine shares it). */
  get runtime(): EngineRuntime {
    this.runtimeView ??= engineRuntime(this.info, () => this.runner.kv.liveBytes);
    return this.runtimeView;
  }

  /** Where the decoder's KV lives, and the bytes and stores held there now (prefix caches, sequences, batches). */
  kvMemory(): { place: KvPlace; bytes: number; stores: number } {
    const kv = this.runner.kv;
    return { place: kv.place, bytes: kv.liveBytes, stores: kv.liveStores };
  }

  /** Sequences decoding or waiting for a batch slot right now. */
  get activeSequences(): number {
    return this.scheduler.activeSequences;
  }

  async close(): Promise<void> {
    for (const ctx of this.openItems) this.closeItem(ctx);
    await this.runner.release();
  }
}

/** Validates requests at the engine's boundary, naming the request and the field (the verifier's too). */
export function parseRequests<T>(schema: z.ZodType<T>, requests: readonly unknown[], what: string): T[] {
  return requests.map((r, i) => {
    const v = schema.safeParse(r);
    if (!v.success) {
      const id = typeof (r as { id?: unknown })?.id === "string" ? (r as { id: string }).id : `#${i}`;
      throw new EngineRequestError(
        `${what} request ${id}: ${v.error.issues.map((x) => `${x.path.join(".") || "(request)"}: ${x.message}`).join("; ")}`,
      );
    }
    return v.data;
  });
}

/** The providers an engine's sessions got and where its KV lives, as readiness checks and logs say it. */
export interface EngineRuntime {
  providers: EngineInfo["providers"];
  kvPlace: KvPlace;
  /** e.g. "decoder on webgpu (KV on the device), vision on webgpu, embed on webgpu". */
  summary: string;
  /** Bytes of KV held now in the decoder's KV space. */
  kvBytes(): number;
}

function engineRuntime(info: EngineInfo, kvBytes: () => number): EngineRuntime {
  const { vision, embed, decoder } = info.providers;
  const kv = info.kvPlace === "device" ? "KV on the device" : "KV in host memory";
  return {
    providers: info.providers,
    kvPlace: info.kvPlace,
    summary: `decoder on ${decoder} (${kv}), vision on ${vision}, embed on ${embed}`,
    kvBytes,
  };
}

function toGenerateResult(req: GenerateRequest, out: ContinuationResult): GenerateResult {
  return {
    id: req.id,
    text: out.text,
    tokens: out.tokens.length,
    truncated: out.reason === "max_tokens" || out.reason === "context",
    finished: out.reason === "eos",
    ...(req.logProb ? { logProb: out.logProb } : {}),
    detail: { finish: out.reason, sampled: out.sampled },
  };
}

/**
 * A request's own sampling over the call's: greedy (the `greedy` strategy), or the item's own
 * temperature and top_p (an OpenAI batch line's); undefined when it has none.
 */
function ownSampling(r: GenerateRequest, call: SamplingParams): { sampling: SamplingParams } | undefined {
  if (r.greedy) return { sampling: { ...call, greedy: true } };
  if (r.temperature === undefined && r.topP === undefined) return undefined;
  return {
    sampling: resolveSampling(
      {
        // A temperature asked for samples at it (0: greedy), whatever the model's do_sample.
        ...(r.temperature !== undefined ? { temperature: r.temperature, greedy: r.temperature === 0 } : {}),
        ...(r.topP !== undefined ? { topP: r.topP } : {}),
      },
      call,
    ),
  };
}
