/**
 * Run settings: how every item of an `ask`, an `eval` row or a fleet run is searched. This is
 * the one place that lists the judge modes, holds the defaults and turns settings into one
 * item's search parameters; the commands, the fleet and the engine all read it from here.
 */
import { z } from "zod";
import { SearchParamsSchema, type SearchParams } from "./params.ts";
import { UsageError } from "../usage-error.ts";
import type { Strategy } from "./types.ts";

/** `score`: one forward pass reads the choice's logits; `generate`: the reference's sampled, parsed verdict. */
export const JUDGE_MODES = ["score", "generate"] as const;
export type JudgeMode = (typeof JUDGE_MODES)[number];

/** The seed every command uses unless told otherwise. */
export const DEFAULT_SEED = 1;
export const DEFAULT_STRATEGY: Strategy = "stage";
export const DEFAULT_BEAM = 4;
export const DEFAULT_JUDGE_MODE: JudgeMode = "score";

const judgeModeError = (iss: { input?: unknown }) =>
  `judge mode must be one of ${JUDGE_MODES.join(", ")}, got ${typeof iss.input === "string" ? JSON.stringify(iss.input) : String(iss.input)}`;

export const SearchSettingsSchema = SearchParamsSchema.omit({ itemId: true }).extend({
  judgeMode: z.enum(JUDGE_MODES, { error: judgeModeError }),
});
export type SearchSettingsInput = z.input<typeof SearchSettingsSchema>;
export type SearchSettings = z.output<typeof SearchSettingsSchema>;

/** Settings that do not validate: a usage error, raised before any item is touched. */
export class SettingsError extends UsageError {
  override readonly name = "SettingsError";
}

/** Checked settings with every default filled in; throws SettingsError naming each bad field. */
export function parseSearchSettings(input: unknown): SearchSettings {
  const r = SearchSettingsSchema.safeParse(input);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) =>
    i.code === "unrecognized_keys" ? `unknown setting(s) ${i.keys.join(", ")}` : i.message,
  );
  throw new SettingsError(`invalid search settings: ${problems.join("; ")}`);
}

/** The search parameters of one item under these settings (the judge mode is the executor's business). */
export function paramsFor(itemId: string, settings: SearchSettings): SearchParams {
  const { judgeMode: _judgeMode, ...search } = settings;
  return { itemId, ...search };
}

/** Settings in a few words, naming only what the strategy uses: `none`, `stage N=4 score`. */
export function settingsLabel(s: SearchSettings): string {
  return s.strategy === "none" ? "none" : `${s.strategy} N=${s.beam} ${s.judgeMode}`;
}

/** What a strategy spends its candidates on, for help pages and tables. */
export const STRATEGY_USES: Record<Strategy, string> = {
  none: "one sampled pass; --beam and --judge are not used",
  "best-of-n": "N whole answers, knock-out judged (--beam N, --judge)",
  sentence: "sentence-level beam: N candidates per sentence, judged (--beam N, --judge)",
  stage: "stage-level beam (the paper's method): N candidates per stage, judged (--beam N, --judge)",
};
