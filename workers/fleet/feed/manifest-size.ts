/** How many items a manifest holds, roughly, for the producer's progress and ETA. */
import { createReadStream } from "node:fs";
import { opendir, stat } from "node:fs/promises";
import { extname } from "node:path";
import { IMAGE_EXTENSIONS, detectFormat, type ManifestFormat } from "../../../shared/io/manifest.ts";

/** Lines of a JSONL file (less the header of a CSV), or the image files of a folder; null when unreadable. */
export async function estimateManifestSize(source: string, format?: ManifestFormat): Promise<number | null> {
  try {
    const st = await stat(source);
    if (st.isDirectory()) {
      let n = 0;
      for await (const d of await opendir(source)) {
        if (!d.name.startsWith(".") && IMAGE_EXTENSIONS.includes(extname(d.name).toLowerCase())) n++;
      }
      return n;
    }
    let lines = 0;
    let last = 10;
    for await (const chunk of createReadStream(source) as AsyncIterable<Buffer>) {
      for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) lines++;
      if (chunk.length > 0) last = chunk[chunk.length - 1]!;
    }
    if (last !== 10) lines++;
    const fmt = format ?? detectFormat(source);
    return Math.max(0, fmt === "csv" ? lines - 1 : lines);
  } catch {
    return null;
  }
}
