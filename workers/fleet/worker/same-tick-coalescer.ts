/**
 * The fleet's coalescing layer: the requests for one open item that arrive in the same turn
 * of the event loop (the N candidates of a step usually do) are handed to the model host as
 * one call. It comes before, and is apart from, the engine's scheduler, which batches the
 * decoder work of all calls in flight, across items. A host call is not a decoder call, so
 * stagebeam_decode_batch_size is not observed here (the engine observes it per decoder step).
 */
import { isBadInput } from "../protocol/index.ts";

/**
 * Gathers the requests submitted in one turn of the event loop and runs them as one batch.
 * Results are matched by id. When a batch fails because one request is bad input, each
 * request is retried alone so the error lands on the request that caused it.
 */
export class SameTickCoalescer<Req extends { id: string }, Res extends { id: string }> {
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
