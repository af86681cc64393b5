/**
 * The bundled policy as its own process verifier, for tests until the trained verifier is
 * bundled: a folder linking the model's files, with a verifier.json whose marker and answers are
 * tokens of its vocabulary (`<pad>` never appears in an answer; `correct` / `incorrect` are its
 * reasoning check's answers).
 */
import { mkdir, readdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { VERIFIER_FILE, VERIFIER_FORMAT } from "../../shared/core/verifier/index.ts";

export const BUNDLED_MODEL = path.resolve(import.meta.dirname, "../../models/stagebeam-tiny");

export const SELF_VERIFIER_TEMPLATE = {
  format: VERIFIER_FORMAT,
  marker: "<pad>",
  good: "correct",
  bad: "incorrect",
  steps: { default: "sentences", stages: { CAPTION: "caption-objects" } },
};

/**
 * Writes the folder under `parent` and returns its path; `template` replaces verifier.json's
 * content (null: none). `model` is the folder linked (the bundled model, or another with its tokenizer).
 */
export async function selfVerifierFolder(
  parent: string,
  template: object | null = SELF_VERIFIER_TEMPLATE,
  model: string = BUNDLED_MODEL,
): Promise<string> {
  const dir = path.join(parent, `self-verifier-${Math.random().toString(36).slice(2, 8)}`);
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(model)) await symlink(path.join(model, name), path.join(dir, name));
  if (template !== null) await writeFile(path.join(dir, VERIFIER_FILE), JSON.stringify(template, null, 2));
  return dir;
}
