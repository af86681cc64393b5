/**
 * Open items of one worker process, least recently used first out.
 *
 * The first job of an item on this worker fetches its image from S3 and opens it on the model
 * host (which may encode the image and prefill the prompt once); every later candidate or
 * comparison of that item on this worker reuses it. Concurrent jobs share one open in flight.
 * An item in use by a running job is never closed; it is closed once evicted and released. A
 * child job whose stretch ends the item's search evicts it (`forget`): nothing on this worker
 * asks for it again, and its KV prefixes would otherwise stay until 64 later items push it out.
 * The verifier opens an item apart from the policy (its own prompt, its own model), so its
 * open items are entries of their own.
 *
 * Requests for the same open item that arrive in the same turn of the event loop (the N
 * candidates of a step usually do) are handed to the host as one call (same-tick-coalescer.ts).
 */
import type {
  GenerateRequest,
  GenerateResult,
  JudgeRequest,
  JudgeResult,
  VerifyRequest,
  VerifyResult,
} from "../../../shared/core/search/types.ts";
import type { ChildItem, ItemInput, ModelHost, OpenItem, OpenVerifierItem, VerifierHost } from "../protocol/index.ts";
import { SameTickCoalescer } from "./same-tick-coalescer.ts";

export interface ItemCacheOptions {
  /** The policy; null on a worker that holds only the verifier. */
  host: ModelHost | null;
  verifier?: VerifierHost | null;
  /** Bytes of a staged image by its s3:// URI; throws BadInputError when there is no such image. */
  fetchImage(uri: string): Promise<Buffer>;
  /** Open items kept (default 64). Items in use may push the count above it for a while. */
  capacity?: number;
}

/** What an entry holds open: the policy's item (generate, judge) or the verifier's (verify). */
type Opened = Partial<OpenItem & OpenVerifierItem> & { close(): void };

interface Entry {
  key: string;
  opening: Promise<Opened>;
  refs: number;
  evicted: boolean;
  generate: SameTickCoalescer<GenerateRequest, GenerateResult>;
  judge: SameTickCoalescer<JudgeRequest, JudgeResult>;
  verify: SameTickCoalescer<VerifyRequest, VerifyResult>;
}

/** Whose item an entry is: the policy's (whatever judge its requests name), or the verifier's. */
type Holder = "policy" | "verifier";

const keyOf = (item: ChildItem, holder: Holder) =>
  JSON.stringify([holder, item.key, item.image, item.question, item.system ?? null]);

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

  generate(item: ChildItem, request: GenerateRequest): Promise<GenerateResult> {
    return this.withItem(item, "policy", (e) => e.generate.submit(request));
  }

  judge(item: ChildItem, request: JudgeRequest): Promise<JudgeResult> {
    return this.withItem(item, "policy", (e) => e.judge.submit(request));
  }

  verify(item: ChildItem, request: VerifyRequest): Promise<VerifyResult> {
    return this.withItem(item, "verifier", (e) => e.verify.submit(request));
  }

  /**
   * Closes the item's entries (the policy's and the verifier's) once no job uses them: its
   * search is over, so nothing on this worker asks for it again, and its KV prefixes are not
   * kept until the LRU reaches them.
   */
  forget(item: ChildItem): void {
    for (const holder of ["policy", "verifier"] as const) {
      const e = this.entries.get(keyOf(item, holder));
      if (e) this.evict(e);
    }
  }

  /** Closes every item not in use now; items in use close when released. */
  closeAll(): void {
    for (const e of [...this.entries.values()]) this.evict(e);
  }

  private async withItem<T>(item: ChildItem, holder: Holder, fn: (e: Entry) => Promise<T>): Promise<T> {
    const e = this.acquire(item, holder);
    try {
      await e.opening;
      return await fn(e);
    } finally {
      e.refs--;
      if (e.evicted) this.closeIfIdle(e);
      else this.shrink();
    }
  }

  private acquire(item: ChildItem, holder: Holder): Entry {
    const key = keyOf(item, holder);
    const e = this.entries.get(key);
    if (e) {
      this.stats.hits++;
      this.entries.delete(key); // re-insert: most recently used last
      this.entries.set(key, e);
      e.refs++;
      return e;
    }
    const opening = this.open(item, holder);
    const held = async <K extends keyof Opened>(kind: K, holds: string) => {
      const fn = (await opening)[kind];
      if (fn === undefined) throw new Error(`this worker holds no ${holds}`);
      return fn;
    };
    const entry: Entry = {
      key,
      opening,
      refs: 1,
      evicted: false,
      generate: new SameTickCoalescer(async (reqs) => (await held("generate", "policy"))(reqs)),
      judge: new SameTickCoalescer(async (reqs) => (await held("judge", "policy"))(reqs)),
      verify: new SameTickCoalescer(async (reqs) => (await held("verify", "verifier"))(reqs)),
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

  private async open(item: ChildItem, holder: Holder): Promise<Opened> {
    const { host, verifier } = this.opts;
    if (holder === "verifier" ? !verifier : host === null) {
      throw new Error(`this worker holds no ${holder === "verifier" ? "verifier" : "policy"}`);
    }
    this.stats.imageFetches++;
    const image = await this.opts.fetchImage(item.image);
    this.stats.opens++;
    const input: ItemInput = {
      id: item.key,
      image,
      question: item.question,
      ...(item.system !== undefined ? { system: item.system } : {}),
    };
    return holder === "verifier" ? verifier!.open(input) : host!.open(input);
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
