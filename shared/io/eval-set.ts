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

export async function readEvalSet(setPath: string): Promise<EvalSet> {
  const st = await stat(setPath).catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`--set ${setPath}: ${error.code === "ENOENT" ? "no such file or folder" : error.message}`);
  });
  const file = st.isDirectory() ? path.join(setPath, EVAL_SET_FILE) : setPath;
  const items: EvalItem[] = [];
  const badLines: string[] = [];
  try {
    for await (const entry of readManifest(file)) {
      if (!entry.ok) {
        badLines.push(entry.message);
        continue;
      }
      const { id, image, question, answer, family } = entry.item;
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
