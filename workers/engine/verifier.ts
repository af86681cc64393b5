/**
 * A process verifier: any model folder in the engine's layout with a `verifier.json` (the
 * contract in shared/core/verifier). It is loaded by the same loader as the policy, opens an
 * item with its own prompt (image features and prompt KV computed once, as for the policy), and
 * scores a step from the logits of its good and bad tokens at the marker after it: one forward
 * pass per candidate over the accepted text and the marked candidate, all candidates of a call
 * batched, the prompt and the shared accepted text reused from the item's cache.
 *
 *   const verifier = await Verifier.load(dir);             // or Verifier.over(engine): the policy as its own verifier
 *   const ctx = await verifier.openItem({ id, image, question });
 *   const scores = await verifier.verify(ctx, requests);
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { VerifyRequestSchema, type VerifyRequest, type VerifyResult } from "../../shared/core/search/types.ts";
import {
  poolScores,
  stepScore,
  VERIFIER_FILE,
  VERIFIER_FORMAT,
  VerifierTemplateSchema,
  verifierPrompt,
  verifierText,
  type VerifierTemplate,
} from "../../shared/core/verifier/index.ts";
import { Engine, parseRequests, type EngineOptions, type OpenItemInput } from "./engine.ts";
import { EngineRequestError, ModelFolderError } from "./errors.ts";
import type { ItemContext } from "./item.ts";
import { modelDigest, normaliseDigest } from "./model-digest.ts";

interface TokenIds {
  marker: number;
  good: number;
  bad: number;
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;

/** verifier.json of `dir`, checked; every problem is a ModelFolderError naming the file. */
export async function readVerifierTemplate(dir: string): Promise<VerifierTemplate> {
  let text: string;
  try {
    text = await readFile(path.join(dir, VERIFIER_FILE), "utf8");
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
    throw new ModelFolderError(
      dir,
      VERIFIER_FILE,
      missing
        ? `missing; a verifier folder holds ${VERIFIER_FILE} ({"format": "${VERIFIER_FORMAT}", "marker": …, "good": …, "bad": …}) beside its model files`
        : `cannot be read (${(err as Error).message})`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ModelFolderError(dir, VERIFIER_FILE, `expected valid JSON (${(err as Error).message})`);
  }
  const r = VerifierTemplateSchema.safeParse(raw);
  if (!r.success) {
    const why = r.error.issues
      .map((i) =>
        i.code === "unrecognized_keys"
          ? `unknown field(s) ${i.keys.join(", ")}`
          : `${i.path.join(".") || "(file)"}: ${i.message}`,
      )
      .join("; ");
    throw new ModelFolderError(dir, VERIFIER_FILE, why);
  }
  return r.data;
}

export class Verifier {
  private constructor(
    readonly engine: Engine,
    readonly template: VerifierTemplate,
    /** The digest of the engine's files and verifier.json together. */
    readonly digest: string,
    private readonly ids: TokenIds,
    private readonly ownsEngine: boolean,
  ) {}

  /** Loads `dir` as a verifier (its own engine); `expectedDigest` is checked against the verifier's digest. */
  static async load(dir: string, options: EngineOptions = {}): Promise<Verifier> {
    const { expectedDigest, ...engineOptions } = options;
    const engine = await Engine.load(dir, engineOptions);
    try {
      const verifier = await Verifier.build(engine, true);
      if (expectedDigest !== undefined && normaliseDigest(expectedDigest) !== verifier.digest) {
        throw new ModelFolderError(
          engine.folder.dir,
          null,
          `verifier digest ${verifier.digest} does not match the expected ${normaliseDigest(expectedDigest)}`,
        );
      }
      return verifier;
    } catch (err) {
      await engine.close();
      throw err;
    }
  }

  /** The verifier of an engine already loaded, from its folder's verifier.json (the policy as its own verifier). */
  static over(engine: Engine): Promise<Verifier> {
    return Verifier.build(engine, false);
  }

  private static async build(engine: Engine, owns: boolean): Promise<Verifier> {
    const dir = engine.folder.dir;
    const template = await readVerifierTemplate(dir);
    const one = (field: "marker" | "good" | "bad"): number => {
      const text = template[field];
      const ids = engine.tokenizer.encode(text);
      const back = ids.length === 1 ? engine.tokenizer.decode(ids) : null;
      if (ids.length !== 1 || back?.trim() !== text.trim()) {
        throw new ModelFolderError(
          dir,
          VERIFIER_FILE,
          `${field} ${JSON.stringify(text)} is ${ids.length === 1 ? `the token ${JSON.stringify(back)}` : `${ids.length} tokens [${ids}]`} in tokenizer.json; expected a text that is exactly one token of the vocabulary`,
        );
      }
      return ids[0]!;
    };
    const ids = { marker: one("marker"), good: one("good"), bad: one("bad") };
    if (ids.good === ids.bad)
      throw new ModelFolderError(dir, VERIFIER_FILE, "good and bad are the same token; expected two tokens");
    const { digest } = await modelDigest(dir, [...engine.folder.files.map((f) => f.name), VERIFIER_FILE]);
    return new Verifier(engine, template, digest, ids, owns);
  }

  /** Opens an item under the verifier's prompt: image encoded, prompt KV computed once. */
  openItem(input: OpenItemInput): Promise<ItemContext> {
    if (typeof input?.question !== "string" || input.question.trim() === "") return this.engine.openItem(input);
    return this.engine.openItem({ ...input, question: verifierPrompt(this.template, input.question) });
  }

  closeItem(ctx: ItemContext): void {
    this.engine.closeItem(ctx);
  }

  /** Scores candidates of one item: one teacher-forced forward pass each, all in one batched call. */
  async verify(ctx: ItemContext, requests: readonly VerifyRequest[]): Promise<VerifyResult[]> {
    const parsed = parseRequests(VerifyRequestSchema, requests, "verify");
    const { tokenizer } = this.engine;
    const plans = parsed.map((r) => {
      const { text, steps } = verifierText(this.template, r.prefix, r.candidate, r.stage);
      const ids = tokenizer.encode(text);
      if (ids.includes(tokenizer.imageTokenId)) {
        throw new EngineRequestError(`verify request ${r.id}: the text contains the image token; expected assistant text only`);
      }
      const at: number[] = [];
      ids.forEach((id, k) => {
        if (id === this.ids.marker) at.push(k);
      });
      if (at.length !== steps.length) {
        throw new EngineRequestError(
          `verify request ${r.id}: the marker ${JSON.stringify(this.template.marker)} appears ${at.length} times in the marked text; expected ${steps.length}, one after each step (the accepted text or the candidate holds the marker itself)`,
        );
      }
      const skip =
        steps.length === 0
          ? "no steps"
          : this.engine.fits(ctx, ids.length)
            ? null
            : `the text is ${ids.length} tokens after the prompt; it does not fit the context window`;
      return { r, ids, at, skip };
    });
    const live = plans.filter((p) => p.skip === null);
    const logits = await this.engine.readLogits(
      ctx,
      live.map((p) => ({ ids: p.ids, at: p.at })),
    );
    const scored = new Map(live.map((p, i) => [p, logits[i]!]));
    const c = this.template.calibration;
    const population = c === undefined ? {} : { population: { mean: c.mean, sd: c.sd } };
    return plans.map((p): VerifyResult => {
      const rows = scored.get(p);
      // A candidate that cannot be read scores 0: it never beats one that can.
      if (rows === undefined) return { id: p.r.id, score: 0, steps: [], ...population, detail: { skipped: p.skip } };
      const steps = rows.map((row) => round(stepScore(row[this.ids.good]!, row[this.ids.bad]!)));
      return { id: p.r.id, score: round(poolScores(steps, this.template.pool)), steps, ...population };
    });
  }

  async close(): Promise<void> {
    if (this.ownsEngine) await this.engine.close();
  }
}
