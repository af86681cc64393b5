/** Numbered text lines from a stream, as the manifest readers take them. */
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";

export function linesOf(input: Readable): AsyncIterable<string> {
  return createInterface({ input, crlfDelay: Infinity });
}

export async function* numbered(lines: AsyncIterable<string>): AsyncGenerator<{ text: string; no: number }> {
  let no = 0;
  for await (const raw of lines) {
    no++;
    yield { text: no === 1 ? raw.replace(/^\uFEFF/, "") : raw, no };
  }
}
