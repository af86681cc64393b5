/**
 * The run's record of manifest order, runs/<run>/index/<chunk>.json, one object per feeder
 * chunk: each line's number, the item it counts as (a duplicate line counts as its own
 * `dup-line~<line>`, failed for its reason) and the id as written (custom_id). `export` walks it to write the output files in manifest order without
 * reading the manifest again. Chunks are cut at fixed positions (the run's chunk size), so a
 * resumed feeder writes the same chunk again rather than a different one.
 */
import { z } from "zod";
import { indexKey, indexPrefix, type S3Store } from "../../../shared/io/storage/s3-store.ts";

export const IndexEntrySchema = z.tuple([z.number().int(), z.string(), z.string().nullable()]);
export type IndexEntry = z.infer<typeof IndexEntrySchema>;

export const IndexChunkSchema = z.object({ chunk: z.number().int().nonnegative(), entries: z.array(IndexEntrySchema) });
export type IndexChunk = z.infer<typeof IndexChunkSchema>;

export async function writeIndexChunk(store: S3Store, run: string, chunk: IndexChunk): Promise<void> {
  await store.putJson(indexKey(run, chunk.chunk), chunk);
}

/** The run's index chunks in manifest order, from chunk `from` on. */
export async function* readIndex(store: S3Store, run: string, from = 0): AsyncGenerator<IndexChunk> {
  for await (const obj of store.list(indexPrefix(run))) {
    const n = Number(obj.key.slice(indexPrefix(run).length, -".json".length));
    if (!Number.isInteger(n) || n < from) continue;
    const chunk = await store.getJson(obj.key, IndexChunkSchema);
    if (chunk) yield chunk;
  }
}
