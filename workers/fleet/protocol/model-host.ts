/**
 * What the fleet worker needs from a model: open an item (image + question, decoded and
 * encoded once) and run the search's work on it. The engine adapter (`worker/engine-host.ts`)
 * implements this over workers/engine; unit and protocol tests use a scripted double.
 *
 * Concurrency is the point: the worker calls `generate`/`judge` of one or many open items
 * from several jobs at once (WORKER_CONCURRENCY), and the host is free to batch those calls
 * into one decoder step. Results are matched to requests by `id`, not by position. A host
 * with a real decoder observes stagebeam_decode_batch_size per decoder call; the worker never
 * does.
 */
import type { SearchExecutor } from "../../../shared/core/search/drive.ts";
import type { VerifyRequest, VerifyResult } from "../../../shared/core/search/types.ts";

/** What a host's engine runs on (the engine's `EngineRuntime`): for /readyz, logs and stagebeam_device_kv_bytes. */
export interface HostRuntime {
  /** e.g. "decoder on webgpu (KV on the device), vision on webgpu, embed on webgpu". */
  summary: string;
  kvPlace: "host" | "device";
  /** Bytes of KV its engine holds now. */
  kvBytes(): number;
}

export interface ItemInput {
  /** The fleet's item key (already a safe id: [A-Za-z0-9_~-]). */
  id: string;
  /** The image file's bytes as staged (PNG, JPEG, …); the host decodes them. */
  image: Buffer;
  question: string;
  /** A system message before the user turn, for the chat template. */
  system?: string;
}

/** One opened item. The judge mode rides in each judge request, the sampling settings in each generate request. */
export interface OpenItem extends SearchExecutor {
  /** Releases what the host holds for the item (encoded image, prompt KV cache). */
  close(): void;
}

export interface ModelHost {
  modelId: string;
  /** sha256:<hex> of the model folder, recorded in every result. */
  digest: string;
  open(item: ItemInput): Promise<OpenItem>;
  /** Optional: the providers its sessions got and where its KV lives (readiness, metrics). */
  runtime?: HostRuntime;
  /** Optional: frees sessions at shutdown. */
  close?(): Promise<void> | void;
}

/** One item opened on the verifier (under the verifier's own prompt). */
export interface OpenVerifierItem {
  verify(requests: VerifyRequest[]): Promise<VerifyResult[]>;
  close(): void;
}

/** What a worker that serves verify jobs holds: a process verifier (worker/engine-host.ts over workers/engine). */
export interface VerifierHost {
  modelId: string;
  /** sha256:<hex> of the verifier's files and verifier.json. */
  digest: string;
  open(item: ItemInput): Promise<OpenVerifierItem>;
  /** Optional: the providers its sessions got and where its KV lives (readiness, metrics). */
  runtime?: HostRuntime;
  close?(): Promise<void> | void;
}

/**
 * The item's input cannot be used (undecodable image, prompt too long, bad parameters). The
 * worker fails such work at once, without retries, and records the item as failed with
 * `code` as the reason. Hosts may throw this class, or any error named `ItemInputError`
 * (the engine's own class) or `EngineRequestError`; see `isBadInput`.
 */
export class BadInputError extends Error {
  override readonly name = "BadInputError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const BAD_INPUT_NAMES = new Set(["BadInputError", "ItemInputError", "EngineRequestError"]);

export function isBadInput(err: unknown): err is Error {
  return err instanceof Error && BAD_INPUT_NAMES.has(err.name);
}

/** The reason code for a bad-input error: its own `code`, or one derived from the engine's class. */
export function badInputCode(err: Error): string {
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && /^[a-z][a-z0-9-]*$/.test(code)) return code;
  if (err.name === "ItemInputError") {
    const field = (err as { field?: unknown }).field;
    return field === "image" ? "image-unreadable" : "bad-input";
  }
  if (err.name === "EngineRequestError") return "bad-request";
  return "bad-input";
}
