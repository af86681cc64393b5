/**
 * The search state as a request job carries it (protocol 3): raw DEFLATE of its JSON, in
 * base64. A state is JSON of many repeated field names and candidates' texts; packed it is a
 * third of the bytes or less, and every step writes it to Redis (updateData) and reads it back
 * (the job's data when the step runs again), so this is most of an item's Redis traffic.
 */
import { deflateRawSync, inflateRawSync } from "node:zlib";

export function packState(state: unknown): string {
  return deflateRawSync(Buffer.from(JSON.stringify(state))).toString("base64");
}

/** The state a packState string holds; throws on anything else (the caller classifies it). */
export function unpackState(packed: string): unknown {
  return JSON.parse(inflateRawSync(Buffer.from(packed, "base64")).toString("utf8"));
}
