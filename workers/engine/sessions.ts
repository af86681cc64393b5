/**
 * onnxruntime-node sessions with execution providers from configuration. Each provider in the
 * preference list is tried in turn; one that fails to initialise (no CUDA libraries, no WebGPU
 * adapter) is logged with its reason and skipped, and CPU is always the last resort.
 *
 * A provider in DEVICE_KV_PROVIDERS can keep the decoder's KV on its device: the session is
 * created with those outputs left there (`preferredOutputLocation`), and the engine uses the
 * device KV space (kv-device.ts). onnxruntime-node binds outputs to device memory only for
 * WebGPU buffers; every other provider (CUDA included) hands each output back as a host array,
 * so its KV makes the round trip through host memory on every call.
 */
import ort from "onnxruntime-node";
import type { ExecutionProvider } from "../../shared/io/config.ts";
import type { SessionSignature, TensorSignature } from "./session-contract.ts";

export interface SessionOptions {
  /** Preference order, e.g. ["cuda", "cpu"]. CPU is appended when missing. */
  executionProviders?: readonly ExecutionProvider[];
  /** Threads inside one operator (ORT default: one per physical core). */
  intraOpThreads?: number;
  /** Threads across independent operators (only with executionMode "parallel"). */
  interOpThreads?: number;
  executionMode?: "sequential" | "parallel";
  graphOptimizationLevel?: "disabled" | "basic" | "extended" | "all";
}

export interface SessionLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface LoadedSession {
  session: ort.InferenceSession;
  provider: ExecutionProvider;
  signature: SessionSignature;
  /** The outputs asked to stay on the device do (the provider can keep them there). */
  outputsOnDevice: boolean;
}

/** Providers whose outputs onnxruntime-node can leave on the device and take back as inputs. */
export const DEVICE_KV_PROVIDERS: readonly ExecutionProvider[] = ["webgpu"];

/** Providers that failed once in this process are not tried again for the next session. */
export class SessionFactory {
  private readonly failed = new Map<ExecutionProvider, string>();
  constructor(
    private readonly options: SessionOptions = {},
    private readonly log?: SessionLog,
  ) {}

  get providers(): ExecutionProvider[] {
    const list = [...(this.options.executionProviders ?? ["cpu"])];
    if (!list.includes("cpu")) list.push("cpu");
    return list;
  }

  /** Why each provider that failed did so. */
  get failures(): Record<string, string> {
    return Object.fromEntries(this.failed);
  }

  /** A session on the first provider that initialises; `deviceOutputs` stay on its device when it can keep them there. */
  async create(file: string, deviceOutputs: readonly string[] = []): Promise<LoadedSession> {
    const base: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: this.options.graphOptimizationLevel ?? "all",
      executionMode: this.options.executionMode ?? "sequential",
      logSeverityLevel: 3,
      // ORT's intra-op threads spin between operators by default, which takes the cores from
      // everything else in the process (a worker's job handling, the scheduler between decode
      // steps). Measured by bench:fleet (stage N=4, 24 items, 2 cores), spinning off: CPU in
      // process 29 s instead of 50, the worker's 44 s instead of 60, and both runs faster.
      extra: { session: { intra_op: { allow_spinning: "0" } } },
      ...(this.options.intraOpThreads !== undefined ? { intraOpNumThreads: this.options.intraOpThreads } : {}),
      ...(this.options.interOpThreads !== undefined ? { interOpNumThreads: this.options.interOpThreads } : {}),
    };
    let lastError: unknown = null;
    for (const provider of this.providers) {
      if (this.failed.has(provider)) continue;
      try {
        const executionProviders = provider === "cpu" ? ["cpu"] : [provider, "cpu"];
        const onDevice = deviceOutputs.length > 0 && DEVICE_KV_PROVIDERS.includes(provider);
        const session = await ort.InferenceSession.create(file, {
          ...base,
          executionProviders,
          ...(onDevice
            ? { preferredOutputLocation: Object.fromEntries(deviceOutputs.map((name) => [name, "gpu-buffer" as const])) }
            : {}),
        });
        return { session, provider, signature: signatureOf(session), outputsOnDevice: onDevice };
      } catch (err) {
        lastError = err;
        const reason = firstLine((err as Error).message);
        if (provider === "cpu") break;
        this.failed.set(provider, reason);
        // Said once per provider (a failed provider is not tried again), and loudly: work meant
        // for an accelerator is about to run on the next provider, often the CPU, many times slower.
        const next = this.providers.find((p) => p !== provider && !this.failed.has(p)) ?? "cpu";
        const message = `EXECUTION PROVIDER ${provider.toUpperCase()} FAILED TO INITIALISE (${reason}); sessions fall back to ${next}`;
        if (this.log !== undefined) this.log.warn({ provider, file, reason, fallback: next }, message);
        else process.stderr.write(`stagebeam: ${message}\n`);
      }
    }
    throw new Error(
      `${file}: cannot create an ONNX Runtime session (${firstLine((lastError as Error | null)?.message ?? "unknown error")})`,
    );
  }
}

function firstLine(text: string): string {
  const line = text.split("\n").find((l) => l.trim() !== "") ?? text;
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

/** Input and output names, element types and shapes as the runtime reports them. */
export function signatureOf(session: ort.InferenceSession): SessionSignature {
  const describe = (
    names: readonly string[],
    meta: readonly ort.InferenceSession.ValueMetadata[] | undefined,
  ): TensorSignature[] =>
    names.map((name) => {
      const m = meta?.find((x) => x.name === name);
      if (m === undefined || !m.isTensor) return { name };
      return { name, type: m.type, shape: m.shape };
    });
  return {
    inputs: describe(session.inputNames, session.inputMetadata),
    outputs: describe(session.outputNames, session.outputMetadata),
  };
}
