/**
 * Readiness: named checks (the model is loaded, Redis answers, S3 answers), each with a
 * timeout, evaluated together and cached for a few seconds, so that a probe every second and
 * a scrape of stagebeam_readiness_check cost Redis and S3 one cheap request per check per
 * `ttlMs` between them. Liveness (`/healthz`) is apart: a process that cannot reach Redis is
 * not ready, yet restarting it would not help.
 */

/** Resolves when the thing checked is fine; throws (or rejects) with why not. */
export type ReadinessCheck = () => unknown;

export interface CheckResult {
  ok: boolean;
  /** Why not, when not ok. */
  error?: string;
  /** What a passing check found, when it says (a check that resolves to `{ detail }`). */
  detail?: string;
}

export interface ReadinessReport {
  ready: boolean;
  checks: Record<string, CheckResult>;
}

export interface ReadinessOptions {
  /** How long one evaluation answers for (default 5 s). */
  ttlMs?: number;
  /** A check slower than this fails (default 2 s). */
  timeoutMs?: number;
  now?: () => number;
}

export class Readiness {
  private readonly ttlMs: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private cached: { at: number; report: Promise<ReadinessReport> } | undefined;

  constructor(
    private readonly checks: Readonly<Record<string, ReadinessCheck>>,
    opts: ReadinessOptions = {},
  ) {
    this.ttlMs = opts.ttlMs ?? 5_000;
    this.timeoutMs = opts.timeoutMs ?? 2_000;
    this.now = opts.now ?? Date.now;
  }

  /** The current report: the cached one while it is fresh (callers at the same moment share one evaluation). */
  report(): Promise<ReadinessReport> {
    const now = this.now();
    if (this.cached === undefined || now - this.cached.at >= this.ttlMs) {
      this.cached = { at: now, report: this.evaluate() };
    }
    return this.cached.report;
  }

  private async evaluate(): Promise<ReadinessReport> {
    const names = Object.keys(this.checks);
    const results = await Promise.all(names.map(async (name) => [name, await this.run(this.checks[name]!)] as const));
    return { ready: results.every(([, r]) => r.ok), checks: Object.fromEntries(results) };
  }

  private async run(check: ReadinessCheck): Promise<CheckResult> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const value = await Promise.race([
        Promise.resolve().then(check),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
        }),
      ]);
      const detail = (value as { detail?: unknown } | null | undefined)?.detail;
      return typeof detail === "string" ? { ok: true, detail } : { ok: true };
    } catch (err) {
      return { ok: false, error: err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
    }
  }
}
