/**
 * An item in flight: its image (the processed pixels and, once encoded, the vision features),
 * its prompt ids, how its sequences are positioned, and a small cache of KV prefixes — the prompt itself and each accepted prefix
 * (prompt + the stages accepted so far), with the logits at their last token. A new sequence
 * continues from the cached entry sharing the longest common prefix with it, so each accepted
 * stage is encoded once per item, not once per candidate, and judge prompts reuse the
 * `<bos><|user|><image>…` block of the question's prompt.
 */
import type { FloatArray, ItemDecoderInputs, KvView } from "./kv.ts";
import type { PositionRule } from "./positions.ts";
import type { ProcessedItem, VisionInput } from "./processors/processor.ts";

export interface CacheEntry {
  ids: readonly number[];
  /** A whole view of a one-row store that the entry holds a reference to (released when evicted). */
  kv: KvView;
  /** Logits after the last id. */
  logits: Float32Array;
  /** Never evicted (the prompt). */
  pinned: boolean;
  lastUsed: number;
}

export function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

export class PrefixCache {
  private readonly entries: CacheEntry[] = [];
  private readonly inflight = new Map<string, Promise<CacheEntry>>();
  private clock = 0;
  private closed = false;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.entries.length;
  }

  get bytes(): number {
    return this.entries.reduce((s, e) => s + e.kv.store.bytes, 0);
  }

  /** The entry sharing the longest common prefix with `ids` (ties: the shorter entry). */
  best(ids: readonly number[]): { entry: CacheEntry; common: number } | null {
    let best: { entry: CacheEntry; common: number } | null = null;
    for (const entry of this.entries) {
      const common = commonPrefix(entry.ids, ids);
      if (best === null || common > best.common || (common === best.common && entry.ids.length < best.entry.ids.length)) {
        best = { entry, common };
      }
    }
    if (best !== null) best.entry.lastUsed = ++this.clock;
    return best;
  }

  /** The entry for exactly `ids`, computing it once however many callers ask at the same time. */
  async getOrCreate(ids: readonly number[], create: () => Promise<Omit<CacheEntry, "lastUsed">>): Promise<CacheEntry> {
    const exact = this.entries.find((e) => e.ids.length === ids.length && commonPrefix(e.ids, ids) === ids.length);
    if (exact !== undefined) {
      exact.lastUsed = ++this.clock;
      return exact;
    }
    const key = ids.join(",");
    let pending = this.inflight.get(key);
    if (pending === undefined) {
      pending = create()
        .then((e) => this.add(e))
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  add(e: Omit<CacheEntry, "lastUsed">): CacheEntry {
    // An entry computed while its item was closing has no holder left to release it.
    if (this.closed) {
      e.kv.store.release();
      throw new Error("the item was closed while one of its KV prefixes was being computed");
    }
    const entry: CacheEntry = { ...e, lastUsed: ++this.clock };
    this.entries.push(entry);
    while (this.entries.length > this.capacity) {
      let victim = -1;
      for (let i = 0; i < this.entries.length; i++) {
        const c = this.entries[i]!;
        if (c.pinned || c === entry) continue;
        if (victim < 0 || c.lastUsed < this.entries[victim]!.lastUsed) victim = i;
      }
      if (victim < 0) break;
      this.entries.splice(victim, 1)[0]!.kv.store.release();
    }
    return entry;
  }

  /** Releases every entry; entries still being computed are released as they arrive. */
  close(): void {
    this.closed = true;
    for (const e of this.entries) e.kv.store.release();
    this.entries.length = 0;
  }
}

/** What the engine keeps for one open item; obtained from `engine.openItem`. */
export class ItemContext {
  /** @internal vision features [imageTokenCount, hidden], once encoded. */
  features: FloatArray | null = null;
  /**
   * @internal read-only decoder inputs computed once for the item (a family's cross-attention
   * keys/values), in the decoder's KV space; the item holds one reference, released on close.
   */
  decoderInputs: ItemDecoderInputs | null = null;
  /** @internal mllama: the image's real tiles, which tokens from the image token on see in decoderInputs. */
  readonly crossTiles: number;
  /**
   * @internal the processed image the vision encoder is fed; kept only by the reference pattern,
   * which re-encodes it per candidate.
   */
  vision: VisionInput | null;
  /** The prompt's token ids, image tokens expanded. */
  readonly promptIds: readonly number[];
  /** How many of `promptIds` are image tokens (and so image feature rows). */
  readonly imageTokenCount: number;
  /** @internal how the decoder positions this item's sequences. */
  readonly positions: PositionRule;
  /** @internal */
  readonly cache: PrefixCache;
  /** @internal */
  closed = false;
  private readonly expandPrompt: (prompt: string) => number[];

  constructor(
    readonly id: string,
    readonly question: string,
    processed: ProcessedItem,
    cacheEntries: number,
  ) {
    this.promptIds = processed.inputIds;
    this.imageTokenCount = processed.imageTokenCount;
    this.positions = processed.positions;
    this.expandPrompt = processed.expand;
    const { pixelValues, pixelAttentionMask, imageGridThw, crossImage } = processed;
    this.vision = { pixelValues, pixelAttentionMask, imageGridThw, crossImage };
    this.crossTiles = crossImage?.tiles ?? 0;
    this.cache = new PrefixCache(cacheEntries);
  }

  get promptTokens(): number {
    return this.promptIds.length;
  }

  /** @internal another rendered prompt of this item (a judge prompt) tokenized with the item's image expansion. */
  expand(prompt: string): number[] {
    return this.expandPrompt(prompt);
  }
}
