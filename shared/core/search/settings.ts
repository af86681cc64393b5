/**
 * Run settings: how every item of an `ask`, an `eval` row or a fleet run is searched. This is
 * the one place that lists the judge modes, holds the defaults and turns settings into one
 * item's search parameters; the commands, the fleet and the engine all read it from here.
 */
import { z } from "zod";
import { SearchParamsSchema, type ItemSettings, type SearchParams } from "./params.ts";
import { UsageError } from "../usage-error.ts";
import { DEFAULT_PAIRWISE_JUDGE, PAIRWISE_JUDGE_MODES, type PairwiseJudgeMode, type Strategy } from "./types.ts";

/**
 * `score`: one forward pass reads the choice's logits; `generate`: the reference's sampled, parsed
 * verdict (both pairwise, the paper's self-judge); `verifier`: a process verifier scores each
 * candidate on its own, and a step keeps the best.
 */
export { PAIRWISE_JUDGE_MODES, type PairwiseJudgeMode } from "./types.ts";
export const JUDGE_MODES = [...PAIRWISE_JUDGE_MODES, "verifier"] as const;
export type JudgeMode = (typeof JUDGE_MODES)[number];

export const isPairwise = (mode: JudgeMode): mode is PairwiseJudgeMode => mode !== "verifier";

/** The seed every command uses unless told otherwise. */
export const DEFAULT_SEED = 1;
export const DEFAULT_STRATEGY: Strategy = "stage";
export const DEFAULT_BEAM = 4;
export const DEFAULT_JUDGE_MODE: JudgeMode = DEFAULT_PAIRWISE_JUDGE;

const judgeModeError = (iss: { input?: unknown }) =>
  `judge mode must be one of ${JUDGE_MODES.join(", ")}, got ${typeof iss.input === "string" ? JSON.stringify(iss.input) : String(iss.input)}`;

export const SearchSettingsSchema = SearchParamsSchema.omit({ itemId: true, judge: true }).extend({
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
    i.code === "unrecognized_keys"
      ? i.path.length > 0
        ? `${i.path.join(".")}: unknown key(s) ${i.keys.join(", ")}`
        : `unknown setting(s) ${i.keys.join(", ")}`
      : i.message,
  );
  throw new SettingsError(`invalid search settings: ${problems.join("; ")}`);
}

/**
 * The search parameters of one item under these settings, with what the item sets for itself
 * (ItemSettings) over the run's. Both drivers take an item's parameters from here, so the
 * in-process search and the fleet draw the same candidates for it. The pairwise judge rides in
 * the search's judge requests (`judge`, absent for the default); a verifier changes the work
 * itself (verifications instead of comparisons).
 */
export function paramsFor(itemId: string, settings: SearchSettings, item: ItemSettings = {}): SearchParams {
  const { judgeMode, ...search } = settings;
  const own = Object.fromEntries(Object.entries(item).filter(([, v]) => v !== undefined));
  return {
    itemId,
    ...search,
    ...own,
    ...(isPairwise(judgeMode) && judgeMode !== DEFAULT_PAIRWISE_JUDGE ? { judge: judgeMode } : {}),
    ...(judgeMode === "verifier" && STRATEGY_JUDGES[settings.strategy] ? { verifier: true } : {}),
  };
}

/** Whether a run under these settings asks a verifier for scores. */
export function needsVerifier(s: Pick<SearchSettings, "strategy" | "judgeMode">): boolean {
  return s.strategy === "swires" || (s.judgeMode === "verifier" && STRATEGY_JUDGES[s.strategy]);
}

/**
 * Settings in a few words, naming only what the strategy uses: `none`, `vote N=4`,
 * `stage N=4 score`, `swires no-merge`, `stage N=4 verifier resample2@CAPTION CAPTION=1`.
 */
export function settingsLabel(s: SearchSettings): string {
  const judged = STRATEGY_JUDGES[s.strategy];
  const options = [
    judged && !s.merge ? "no-merge" : null,
    judged && (s.resample ?? 0) > 0 ? `resample${s.resample}${s.resampleStages ? `@${s.resampleStages.join("+")}` : ""}` : null,
    ...Object.entries(s.stageTemperature ?? {}).map(([stage, t]) => `${stage}=${t}`),
  ].filter((o) => o !== null);
  const rest = options.length > 0 ? ` ${options.join(" ")}` : "";
  if (s.strategy === "swires") return `swires${rest}`;
  if (!STRATEGY_USES_BEAM[s.strategy]) return `${s.strategy}${rest}`;
  return judged ? `${s.strategy} N=${s.beam} ${s.judgeMode}${rest}` : `${s.strategy} N=${s.beam}${rest}`;
}

/** Strategies whose candidates a judge or verifier picks from (the others take --judge but do not use it). */
const STRATEGY_JUDGES: Record<Strategy, boolean> = {
  none: false,
  greedy: false,
  "best-of-n": true,
  vote: false,
  "vote-weighted": false,
  sentence: true,
  stage: true,
  swires: true,
};

const STRATEGY_USES_BEAM: Record<Strategy, boolean> = { ...STRATEGY_JUDGES, vote: true, "vote-weighted": true, swires: false };

/** What a strategy spends its candidates on, for help pages and tables. */
export const STRATEGY_USES: Record<Strategy, string> = {
  none: "one sampled pass; --beam and --judge are not used",
  "best-of-n": "N whole answers, knock-out judged or verifier-scored (--beam N, --judge)",
  sentence: "sentence-level beam: N candidates per sentence, judged (--beam N, --judge)",
  stage: "stage-level beam (the paper's method): N candidates per stage, judged (--beam N, --judge)",
  greedy: "one pass, the most likely token at every step; --beam and --judge are not used",
  vote: "N whole answers; the most frequent CONCLUSION wins, ties to the higher mean token log-prob (--beam N; no judge)",
  "vote-weighted": "as vote, each vote weighted by its answer's geometric-mean token probability (--beam N; no judge)",
  swires:
    "stage-wise retracing search (the reference's swires.py) scored by the verifier: 4 captions keep 2, 2 reasonings each, retrace to CAPTION up to 4 times, 3 conclusions; --beam and --judge are not used",
};
