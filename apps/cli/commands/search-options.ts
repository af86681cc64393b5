/** The search flags, the same on `ask`, `eval`, `submit` and `demo`, with the defaults of the settings module. */
import { type Command, Option } from "commander";
import {
  DEFAULT_BEAM,
  DEFAULT_JUDGE_MODE,
  DEFAULT_SEED,
  DEFAULT_STRATEGY,
  JUDGE_MODES,
  parseSearchSettings,
  STRATEGY_USES,
  type SearchSettings,
} from "../../../shared/core/search/settings.ts";
import { STRATEGIES } from "../../../shared/core/search/types.ts";
import { UsageError } from "../../../shared/core/usage-error.ts";
import { intOption } from "./common.ts";

export interface SearchCliOptions {
  strategy: string;
  beam: number;
  judge: string;
  seed: number;
  maxStageTokens?: number;
  /** Absent (benchmarks): DEFAULT_MAX_BEAM. */
  maxBeam?: number;
}

/**
 * Candidates a step may have unless --max-beam says otherwise: a step costs about N times one
 * candidate's model calls (and best-of-n's judge N-1 more), so a mistyped `--beam 1000` would run
 * for minutes an item instead of failing at once.
 */
export const DEFAULT_MAX_BEAM = 64;
/** Tokens a stage or sentence candidate may be capped at: far above any stage, far below a runaway. */
export const MAX_STAGE_TOKENS = 65_536;

const strategyHelp = STRATEGIES.map((s) => `  ${s.padEnd(13)} ${STRATEGY_USES[s]}`).join("\n");

export function addSearchOptions(command: Command): Command {
  return command
    .addOption(new Option("--strategy <name>", `search strategy: ${STRATEGIES.join(", ")}`).default(DEFAULT_STRATEGY))
    .option("--beam <n>", `candidates per step (best-of-N: N), 1 to --max-beam`, intOption("--beam", -1_000_000), DEFAULT_BEAM)
    .option(
      "--max-beam <n>",
      "the largest --beam accepted (a step costs about N times one candidate)",
      intOption("--max-beam", 1, 4096),
      DEFAULT_MAX_BEAM,
    )
    .addOption(new Option("--judge <mode>", `judge mode: ${JUDGE_MODES.join(", ")}`).default(DEFAULT_JUDGE_MODE))
    .option(
      "--seed <n>",
      "seed; the same seed gives an item the same answer, in process or on any worker",
      intOption("--seed", 0),
      DEFAULT_SEED,
    )
    .option(
      "--max-stage-tokens <n>",
      "token cap of one stage or sentence candidate",
      intOption("--max-stage-tokens", 1, MAX_STAGE_TOKENS),
    )
    .addHelpText(
      "after",
      `\nStrategies:\n${strategyHelp}\nJudge modes:\n  score      one forward pass reads the logits of "1" vs "2", both orders averaged\n  generate   the reference's sampled judgement, parsed\n  verifier   a process verifier scores each candidate on its own, one batched pass a step (ask, eval: --verifier; workers: VERIFIER_MODEL_DIR)`,
    );
}

/** Checked settings from the flags (a bad strategy, beam or judge mode is a usage error). */
export function searchSettings(o: SearchCliOptions): SearchSettings {
  // Below 1 is the settings' own error; above the cap is this command's.
  const maxBeam = o.maxBeam ?? DEFAULT_MAX_BEAM;
  if (o.beam > maxBeam)
    throw new UsageError(
      `--beam ${o.beam}: expected 1 to ${maxBeam} candidates a step (each step costs about ${o.beam} times one candidate); pass --max-beam ${o.beam} to allow it`,
    );
  return parseSearchSettings({
    strategy: o.strategy,
    beam: o.beam,
    seed: o.seed,
    judgeMode: o.judge,
    ...(o.maxStageTokens !== undefined ? { maxStageTokens: o.maxStageTokens } : {}),
  });
}
