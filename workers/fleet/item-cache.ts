/**
 * Open items of one worker process, least recently used first out.
 *
 * The first job of an item on this worker fetches its image from S3 and opens it on the model
 * host (which may encode the image and prefill the prompt once); every later candidate or
 * comparison of that item on this worker reuses it. Concurrent jobs share one open in flight.
 * An item in use by a running job is never closed; it is closed once evicted and released.
 *
 * Requests for the same open item that arrive in the same turn of the event loop (the N
 * candidates of a step usually do) are handed to the host as one batch.
 */
import type { GenerateRequest, GenerateResult, JudgeRequest, JudgeResult } from "../../shared/core/search/types.ts";
import type { JudgeMode } from "../../shared/core/search/settings.ts";
import { isBadInput, type ModelHost, type OpenItem } from "./model-host.ts";
import type { ChildItem } from "./protocol.ts";

export interface ItemCacheOptions {
  host: ModelHost;
  /** Bytes of a staged image by its s3:// URI; throws BadInputError when there is no such image. */
  fetchImage(uri: string): Promise<Buffer>;
  /** Open items kept (default 64). Items in use may push the count above it for a while. */
  capacity?: number;
  /** Called with the size of every batch handed to the host. */
  onBatch?(kind: "generate" | "judge", size: number): void;
}

interface Entry {
  key: string;
  opening: Promise<OpenItem>;
  refs: number;
  evicted: boolean;
  generate: Coalescer<GenerateRequest, GenerateResult>;
  judge: Coalescer<JudgeRequest, JudgeResult>;
}

export interface ItemCacheStats {
  opens: number;
  imageFetches: number;
  hits: number;
  closes: number;
}

export class ItemCache {
  private readonly entries = new Map<string, Entry>();
  private readonly capacity: number;
  readonly stats: ItemCacheStats = { opens: 0, imageFetches: 0, hits: 0, closes: 0 };

  constructor(private readonly opts: ItemCacheOptions) {
    this.capacity = Math.max(1, opts.capacity ?? 64);
  }

  get size(): number {
    return this.entries.size;
  }

  generate(item: ChildItem, judgeMode: JudgeMode, request: GenerateRequest): Promise<GenerateResult> {
    return this.withItem(item, judgeMode, (e) => e.generate.submit(request));
  }

  judge(item: ChildItem, judgeMode: JudgeMode, request: JudgeRequest): Promise<JudgeResult> {
    return this.withItem(item, judgeMode, (e) => e.judge.submit(request));
  }

  /** Closes every item not in use now; items in use close when released. */
  closeAll(): void {
    for (const e of [...this.entries.values()]) this.evict(e);
  }

  private async withItem<T>(item: ChildItem, judgeMode: JudgeMode, fn: (e: Entry) => Promise<T>): Promise<T> {
    const e = this.acquire(item, judgeMode);
    try {
      await e.opening;
      return await fn(e);
    } finally {
      e.refs--;
      if (e.evicted) this.closeIfIdle(e);
      else this.shrink();
    }
  }

  private acquire(item: ChildItem, judgeMode: JudgeMode): Entry {
    const key = JSON.stringify([judgeMode, item.key, item.image, item.question]);
    let e = this.entries.get(key);
    if (e) {
      this.stats.hits++;
      this.entries.delete(key); // re-insert: most recently used last
      this.entries.set(key, e);
      e.refs++;
      return e;
    }
    const opening = this.open(item, judgeMode);
    const entry: Entry = {
      key,
      opening,
      refs: 1,
      evicted: false,
      generate: new Coalescer(async (reqs) => {
        this.opts.onBatch?.("generate", reqs.length);
        return (await opening).generate(reqs);
      }),
      judge: new Coalescer(async (reqs) => {
        this.opts.onBatch?.("judge", reqs.length);
        return (await opening).judge(reqs);
      }),
    };
    // A failed open is not cached: the next job (or a retry) tries again.
    opening.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
      entry.evicted = true;
    });
    this.entries.set(key, entry);
    this.shrink();
    return entry;
  }

  private async open(item: ChildItem, judgeMode: JudgeMode): Promise<OpenItem> {
    this.stats.imageFetches++;
    const image = await this.opts.fetchImage(item.image);
    this.stats.opens++;
    return this.opts.host.open({ id: item.key, image, question: item.question }, { judgeMode });
  }

  private shrink(): void {
    if (this.entries.size <= this.capacity) return;
    for (const e of this.entries.values()) {
      if (this.entries.size <= this.capacity) break;
      if (e.refs === 0) this.evict(e);
    }
  }

  private evict(e: Entry): void {
    if (this.entries.get(e.key) === e) this.entries.delete(e.key);
    e.evicted = true;
    this.closeIfIdle(e);
  }

  private closeIfIdle(e: Entry): void {
    if (e.refs > 0) return;
    e.refs = -1; // closed: never twice
    e.opening.then(
      (open) => {
        this.stats.closes++;
        open.close();
      },
      () => {},
    );
  }
}

/**
 * Gathers the requests submitted in one turn of the event loop and runs them as one batch.
 * Results are matched by id. When a batch fails because one request is bad input, each
 * request is retried alone so the error lands on the request that caused it.
 */
export class Coalescer<Req extends { id: string }, Res extends { id: string }> {
  private pending: { req: Req; resolve: (r: Res) => void; reject: (e: unknown) => void }[] = [];
  private scheduled = false;

  constructor(private readonly run: (reqs: Req[]) => Promise<Res[]>) {}

  submit(req: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      this.pending.push({ req, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    // One request per id in a batch; a duplicate id waits for the next one.
    const batch: typeof this.pending = [];
    const later: typeof this.pending = [];
    const ids = new Set<string>();
    for (const p of this.pending) {
      if (ids.has(p.req.id)) {
        later.push(p);
      } else {
        ids.add(p.req.id);
        batch.push(p);
      }
    }
    this.pending = later;
    if (later.length > 0) {
      this.scheduled = true;
      setImmediate(() => void this.flush());
    }
    try {
      const results = await this.run(batch.map((p) => p.req));
      this.settle(batch, results);
    } catch (err) {
      if (batch.length > 1 && isBadInput(err)) {
        await Promise.all(
          batch.map(async (p) => {
            try {
              this.settle([p], await this.run([p.req]));
            } catch (e) {
              p.reject(e);
            }
          }),
        );
      } else {
        for (const p of batch) p.reject(err);
      }
    }
  }

  private settle(batch: typeof this.pending, results: readonly Res[]): void {
    const byId = new Map<string, Res>();
    for (const r of Array.isArray(results) ? results : []) {
      if (r && typeof r.id === "string") byId.set(r.id, r);
    }
    for (const p of batch) {
      const r = byId.get(p.req.id);
      if (r) p.resolve(r);
      else p.reject(new Error(`the model host returned no result for ${p.req.id}`));
    }
  }
}
