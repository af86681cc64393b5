/**
 * An evaluation set: any manifest the fleet takes (JSONL or CSV with id, image, question and
 * the gold answer; `family` optional), or a folder holding one as `items.jsonl` (what
 * `stagebeam scenes` writes). Bad lines are returned with their messages, not thrown, so one
 * bad line costs one item, not the whole evaluation.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import { UsageError } from "../core/usage-error.ts";
import { readManifest } from "./manifest.ts";

export interface EvalItem {
  id: string;
  /** Absolute path of the local image. */
  imagePath: string;
  question: string;
  /** The gold answer. */
  answer: string;
  family?: string;
}

export interface EvalSet {
  /** The manifest file that was read. */
  file: string;
  items: EvalItem[];
  /** One message per line that could not be used, naming the line, the item and the field. */
  badLines: string[];
}

/** The manifest a folder holds. */
export const EVAL_SET_FILE = "items.jsonl";

export interface EvalSetOptions {
  /** Where local images may live, symlinks followed (default: the manifest's folder). */
  imageRoot?: string;
}

export async function readEvalSet(setPath: string, opts: EvalSetOptions = {}): Promise<EvalSet> {
  const st = await stat(setPath).catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`--set ${setPath}: ${error.code === "ENOENT" ? "no such file or folder" : error.message}`);
  });
  if (opts.imageRoot !== undefined) {
    const root = opts.imageRoot;
    const isFolder = await stat(root).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!isFolder) throw new UsageError(`--image-root ${root}: not a folder`);
  }
  const file = st.isDirectory() ? path.join(setPath, EVAL_SET_FILE) : setPath;
  const items: EvalItem[] = [];
  const badLines: string[] = [];
  // An id names one item: a second line with it would be scored twice and joined ambiguously.
  const firstLine = new Map<string, number>();
  try {
    for await (const entry of readManifest(file, opts.imageRoot !== undefined ? { imageRoot: opts.imageRoot } : {})) {
      if (!entry.ok) {
        badLines.push(entry.message);
        continue;
      }
      const { id, image, question, answer, family } = entry.item;
      const first = firstLine.get(id);
      if (first !== undefined) {
        badLines.push(
          `line ${entry.line}, item ${JSON.stringify(id)}, field "id": got the id of line ${first} again; expected each id once`,
        );
        continue;
      }
      firstLine.set(id, entry.line);
      if (image.startsWith("s3://")) {
        badLines.push(
          `line ${entry.line}, item ${JSON.stringify(id)}, field "image": got ${image}; expected a local path (eval runs on this machine)`,
        );
      } else if (answer === undefined) {
        badLines.push(
          `line ${entry.line}, item ${JSON.stringify(id)}, field "answer": missing; expected the gold answer to score against`,
        );
      } else {
        items.push({ id, imagePath: image, question, answer, ...(family !== undefined ? { family } : {}) });
      }
    }
  } catch (error) {
    throw new UsageError(`--set ${setPath}: ${(error as Error).message}`);
  }
  return { file, items, badLines };
}
