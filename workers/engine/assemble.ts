/**
 * Assembling an engine from a model folder: options checked, the folder loaded and verified,
 * its sessions created and checked against the contract, and the parts built that serve
 * requests (runner, batch executor and scheduler, backend, judge). `Engine.load` is this
 * plus the engine around the parts.
 */
import ort from "onnxruntime-node";
import type { DtypeSetting, ExecutionProvider } from "../../shared/io/config.ts";
import type { JudgeTemplates } from "../../shared/core/prompts/templates.ts";
import { CachedBackend, ReferenceBackend, type Backend } from "./backend.ts";
import { BatchExecutor, type EngineObserver } from "./batch-executor.ts";
import { EngineRequestError, ModelFolderError } from "./errors.ts";
import { DEFAULT_IMAGE_LIMITS, type ImageLimits } from "../../shared/io/image-policy.ts";
import { PAIRWISE_JUDGE_MODES, type PairwiseJudgeMode } from "../../shared/core/search/settings.ts";
import { Judge } from "./judge.ts";
import { bytesPerPosition, type KvPlace } from "./kv.ts";
import { DeviceKvSpace } from "./kv-device.ts";
import { HostKvSpace } from "./kv-host.ts";
import { atSessionFile, SESSION_NAMES, type SessionName } from "./model-files.ts";
import { loadModelFolder, type ModelFolder } from "./model-folder.ts";
import { loadProcessor, type Processor } from "./processors/index.ts";
import { checkSessionContract, presentName, type SessionContract } from "./session-contract.ts";
import { zeroCounters, type EngineCounters } from "./counters.ts";
import { ModelRunner } from "./runner.ts";
import { resolveSampling, Sampler, samplingFromGeneration, type SamplingParams } from "./sampler.ts";
import { Scheduler } from "./scheduler.ts";
import { SessionFactory, type LoadedSession, type SessionLog, type SessionOptions } from "./sessions.ts";
import { StopTables } from "./stops.ts";
import { EngineTokenizer } from "./tokenizer.ts";
export interface EngineLogger extends SessionLog {
  debug?(obj: object, msg: string): void;
}

export interface EngineOptions extends SessionOptions {
  /** Most sequences advanced by one decoder call (default 16). */
  maxBatch?: number;
  /** Most batch slots (rows × positions) in one prefill call (default 16384). */
  maxPrefillSlots?: number;
  /**
   * The paper's work pattern, for benchmarks: candidates one at a time, image and prompt
   * re-encoded per candidate (no prefix cache), whole-text decode after each token for the stop
   * check, generative judge. Same sampling streams, so answers are comparable.
   */
  reference?: boolean;
  /** Judge mode when a call does not say (default "score"; "generate" in reference mode). */
  judgeMode?: PairwiseJudgeMode;
  /** Token cap of a generated judge answer (default 32). */
  judgeMaxTokens?: number;
  /** Overrides of the model's generation_config.json sampling. */
  sampling?: Partial<SamplingParams>;
  /** Cached KV prefixes per item, the prompt included (default 6). */
  prefixCacheEntries?: number;
  /** Keep the token embedding table in memory when it is at most this big (default 64 MiB). */
  embeddingTableMaxBytes?: number;
  imageLimits?: Partial<ImageLimits>;
  /** Refuse a folder whose digest differs (`sha256:<hex>`). */
  expectedDigest?: string;
  /** Judge templates for a folder without judge_templates.json (else the paper's). */
  judgeTemplates?: JudgeTemplates;
  /**
   * Keep the decoder's KV on its device when its provider can (default true); false makes it
   * cross to the host and back on every call, as any other provider's does (for comparisons).
   */
  kvOnDevice?: boolean;
  /** Most bytes of KV held at once (default: no limit); decode batches admit sequences while they fit (KV_BUDGET_MB). */
  kvBudgetBytes?: number;
  /** Which dtype each session loads (MODEL_DTYPE). */
  dtype?: DtypeSetting;
  logger?: EngineLogger;
  /** Called after every decoder call, for metrics. */
  observer?: EngineObserver;
}

export interface EngineInfo {
  dir: string;
  digest: string;
  modelType: string | null;
  /** The execution provider each session runs on. */
  providers: { vision: ExecutionProvider; embed: ExecutionProvider; decoder: ExecutionProvider };
  /** Where the decoder's KV lives: on its device (a provider in DEVICE_KV_PROVIDERS), else in host memory. */
  kvPlace: KvPlace;
  /** Why preferred providers were skipped. */
  providerFailures: Record<string, string>;
  contract: SessionContract;
  vocabSize: number;
  hiddenSize: number;
  contextLength: number | null;
  embeddingTable: boolean;
  kvBytesPerToken: number;
  reference: boolean;
  maxBatch: number;
  loadSeconds: number;
}

const DEFAULTS = {
  maxBatch: 16,
  maxPrefillSlots: 16384,
  judgeMaxTokens: 32,
  prefixCacheEntries: 6,
  embeddingTableMaxBytes: 64 * 1024 * 1024,
};

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1)
    throw new EngineRequestError(`engine option ${name} must be an integer >= 1, got ${JSON.stringify(value)}`);
  return v;
}

/** Everything an Engine is made of. */
export interface EngineParts {
  info: EngineInfo;
  folder: ModelFolder;
  processor: Processor;
  tokenizer: EngineTokenizer;
  sampling: SamplingParams;
  runner: ModelRunner;
  scheduler: Scheduler;
  backend: Backend;
  judge: Judge;
  counters: EngineCounters;
  prefixCacheEntries: number;
  judgeMode: PairwiseJudgeMode;
}

/**
 * The folder's three sessions. A file ONNX Runtime cannot open is a ModelFolderError naming it;
 * the sessions already created are released first.
 */
async function createSessions(
  factory: SessionFactory,
  folder: ModelFolder,
  kvOnDevice: boolean,
): Promise<Record<SessionName, LoadedSession>> {
  const paths: Record<SessionName, string> = {
    vision_encoder: folder.onnx.vision,
    embed_tokens: folder.onnx.embed,
    decoder_model_merged: folder.onnx.decoder,
  };
  const loaded: Partial<Record<SessionName, LoadedSession>> = {};
  try {
    // The decoder's present.* may stay on its device, to come back as its past_key_values.
    const presents = Array.from({ length: folder.spec.numLayers }, (_, i) => [
      presentName(i, "key"),
      presentName(i, "value"),
    ]).flat();
    for (const name of SESSION_NAMES) {
      try {
        loaded[name] = await factory.create(paths[name], name === "decoder_model_merged" && kvOnDevice ? presents : []);
      } catch (err) {
        throw new ModelFolderError(folder.dir, folder.sessions[name].file, (err as Error).message.replace(/^.*?: /, ""));
      }
    }
    return loaded as Record<SessionName, LoadedSession>;
  } catch (err) {
    await Promise.allSettled(Object.values(loaded).map((s) => s.session.release()));
    throw err;
  }
}

export async function assembleEngine(dir: string, options: EngineOptions = {}): Promise<EngineParts> {
  const started = performance.now();
  const maxBatch = positiveInt("maxBatch", options.maxBatch, DEFAULTS.maxBatch);
  const maxPrefillSlots = positiveInt("maxPrefillSlots", options.maxPrefillSlots, DEFAULTS.maxPrefillSlots);
  const judgeMaxTokens = positiveInt("judgeMaxTokens", options.judgeMaxTokens, DEFAULTS.judgeMaxTokens);
  const prefixCacheEntries = positiveInt("prefixCacheEntries", options.prefixCacheEntries, DEFAULTS.prefixCacheEntries);
  const reference = options.reference ?? false;
  const judgeMode = options.judgeMode ?? (reference ? "generate" : "score");
  if (!PAIRWISE_JUDGE_MODES.includes(judgeMode))
    throw new EngineRequestError(
      `engine option judgeMode must be one of ${PAIRWISE_JUDGE_MODES.join(", ")}, got ${JSON.stringify(judgeMode)}`,
    );

  const folder = await loadModelFolder(dir, {
    ...(options.expectedDigest !== undefined ? { expectedDigest: options.expectedDigest } : {}),
    ...(options.judgeTemplates !== undefined ? { judgeTemplates: options.judgeTemplates } : {}),
    ...(options.dtype !== undefined ? { dtype: options.dtype } : {}),
  });
  const tokenizer = new EngineTokenizer(folder);
  const imageLimits: ImageLimits = { ...DEFAULT_IMAGE_LIMITS, ...options.imageLimits };
  const processor = await loadProcessor(folder, imageLimits);
  const factory = new SessionFactory(options, options.logger);
  const {
    vision_encoder: vision,
    embed_tokens: embed,
    decoder_model_merged: decoder,
  } = await createSessions(factory, folder, options.kvOnDevice ?? true);
  const sessions = [vision, embed, decoder];
  try {
    let contract: SessionContract;
    try {
      contract = checkSessionContract(
        folder.dir,
        folder.spec,
        { vision: vision.signature, embed: embed.signature, decoder: decoder.signature },
        folder.preprocessor ?? undefined,
        folder.family,
      );
    } catch (err) {
      throw atSessionFile(err, folder.sessions);
    }
    const counters = zeroCounters();
    let hidden = contract.hiddenSize;
    if (hidden === null) {
      const probe = await embed.session.run({ input_ids: new ort.Tensor("int64", BigInt64Array.from([0n]), [1, 1]) });
      hidden = probe.inputs_embeds!.dims[2]!;
    }
    const vocab = contract.vocabSize ?? folder.spec.vocabSize ?? tokenizer.vocabSize;
    const runner = new ModelRunner(
      vision.session,
      embed.session,
      decoder.session,
      folder.spec,
      contract,
      decoder.outputsOnDevice
        ? new DeviceKvSpace({ provider: decoder.provider, type: contract.kvType })
        : new HostKvSpace(contract.kvType),
      hidden,
      vocab,
      counters,
      // mllama's prompt holds <|image|>, an embedded id past the predicted vocabulary.
      contract.cross === null ? vocab : Math.max(vocab, tokenizer.vocabSize),
    );
    const table = await runner.loadEmbeddingTable(options.embeddingTableMaxBytes ?? DEFAULTS.embeddingTableMaxBytes);
    counters.embedCalls = 0;
    counters.forwardPasses = 0;

    const sampler = new Sampler(vocab, Math.min(vocab, tokenizer.vocabSize), [folder.spec.imageTokenId]);
    const anchor = folder.spec.bosTokenId ?? folder.spec.eosTokenIds[0]!;
    const stops = new StopTables(
      {
        encode: (t) => tokenizer.encode(t),
        surface: (id) => (id < tokenizer.vocabSize ? tokenizer.decodeContinuation(anchor, [id]) : ""),
      },
      vocab,
      folder.spec.eosTokenIds,
    );
    // Built now, so the first sentence-level request does not block the event loop on it.
    stops.table({ kind: "sentence" });
    // A cross-attention model's image token is an ordinary embedded token: no features go in its place.
    const featureTokenId = contract.cross === null ? folder.spec.imageTokenId : -1;
    const executor = new BatchExecutor(runner, sampler, { imageTokenId: featureTokenId, observer: options.observer });
    const scheduler = new Scheduler(executor, {
      maxBatch,
      maxPrefillSlots,
      ...(options.kvBudgetBytes !== undefined
        ? {
            kvBudgetBytes: options.kvBudgetBytes,
            kvBytesPerPosition: bytesPerPosition(runner.layout),
            kvLiveBytes: () => runner.kv.liveBytes,
          }
        : {}),
    });
    const contextLength = folder.spec.contextLength ?? Infinity;
    const parts = { runner, scheduler, sampler, stops, tokenizer, contextLength };
    const backend: Backend = reference ? new ReferenceBackend(parts) : new CachedBackend(parts);
    const sampling = resolveSampling(options.sampling, samplingFromGeneration(folder.generation));
    let judge: Judge;
    try {
      judge = new Judge({
        backend,
        tokenizer,
        templates: folder.judgeTemplates,
        contextLength,
        maxTokens: judgeMaxTokens,
        sampling,
      });
    } catch (err) {
      throw new ModelFolderError(
        folder.dir,
        "judge_templates.json",
        (err as Error).message.replace(/^judge_templates\.json: /, ""),
      );
    }
    const info: EngineInfo = {
      dir: folder.dir,
      digest: folder.digest,
      modelType: folder.spec.modelType,
      providers: { vision: vision.provider, embed: embed.provider, decoder: decoder.provider },
      kvPlace: runner.kv.place,
      providerFailures: factory.failures,
      contract,
      vocabSize: vocab,
      hiddenSize: hidden,
      contextLength: folder.spec.contextLength,
      embeddingTable: table,
      kvBytesPerToken: bytesPerPosition(runner.layout),
      reference,
      maxBatch,
      loadSeconds: (performance.now() - started) / 1000,
    };
    options.logger?.info(
      { dir: info.dir, digest: info.digest, providers: info.providers, reference, maxBatch, loadSeconds: info.loadSeconds },
      "model loaded",
    );
    return {
      info,
      folder,
      processor,
      tokenizer,
      sampling,
      runner,
      scheduler,
      backend,
      judge,
      counters,
      prefixCacheEntries,
      judgeMode,
    };
  } catch (err) {
    await Promise.allSettled(sessions.map((s) => s.session.release()));
    throw err;
  }
}
