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
import { intOption } from "./common.ts";

export interface SearchCliOptions {
  strategy: string;
  beam: number;
  judge: string;
  seed: number;
  maxStageTokens?: number;
  /** false with --no-merge. */
  merge?: boolean;
  resample?: number;
  /** `CAPTION,REASONING`. */
  resampleStages?: string;
  /** `CAPTION=1.0,REASONING=0.8`. */
  stageTemperature?: string;
}

/** `CAPTION=1.0,REASONING=0.8` → { CAPTION: 1, REASONING: 0.8 }; the settings check the names and values. */
export function stageTemperatures(spec: string): Record<string, number> {
  return Object.fromEntries(
    spec.split(",").map((part) => {
      const [stage = "", t = ""] = part.trim().split("=");
      const value = t.trim() === "" ? Number.NaN : Number(t);
      return [stage.trim(), value];
    }),
  );
}

const strategyHelp = STRATEGIES.map((s) => `  ${s.padEnd(13)} ${STRATEGY_USES[s]}`).join("\n");

export function addSearchOptions(command: Command): Command {
  return command
    .addOption(new Option("--strategy <name>", `search strategy: ${STRATEGIES.join(", ")}`).default(DEFAULT_STRATEGY))
    .option("--beam <n>", "candidates per step (best-of-N: N)", intOption("--beam", -1_000_000), DEFAULT_BEAM)
    .addOption(new Option("--judge <mode>", `judge mode: ${JUDGE_MODES.join(", ")}`).default(DEFAULT_JUDGE_MODE))
    .option(
      "--seed <n>",
      "seed; the same seed gives an item the same answer, in process or on any worker",
      intOption("--seed", -1_000_000),
      DEFAULT_SEED,
    )
    .option("--max-stage-tokens <n>", "token cap of one stage or sentence candidate", intOption("--max-stage-tokens", -1_000_000))
    .option("--no-merge", "judge every sampled candidate, equal texts too (by default each distinct text is judged once)")
    .option(
      "--resample <n>",
      "sample a judged candidate again, up to N times, while it equals an earlier one of its step (default 0)",
      intOption("--resample", 0, 16),
    )
    .option("--resample-stages <list>", "only these stages resample, e.g. CAPTION (default: every judged step)")
    .option("--stage-temperature <list>", "sampling temperature per stage, e.g. CAPTION=1.0,REASONING=0.8 (default: the model's)")
    .addHelpText(
      "after",
      `\nStrategies:\n${strategyHelp}\nJudge modes:\n  score      one forward pass reads the logits of "1" vs "2", both orders averaged\n  generate   the reference's sampled judgement, parsed\n  verifier   a process verifier scores each candidate on its own, one batched pass a step (ask, eval: --verifier; workers: VERIFIER_MODEL_DIR)`,
    );
}

/** Checked settings from the flags (a bad strategy, beam or judge mode is a usage error). */
export function searchSettings(o: SearchCliOptions): SearchSettings {
  return parseSearchSettings({
    strategy: o.strategy,
    beam: o.beam,
    seed: o.seed,
    judgeMode: o.judge,
    ...(o.maxStageTokens !== undefined ? { maxStageTokens: o.maxStageTokens } : {}),
    ...(o.merge === false ? { merge: false } : {}),
    ...(o.resample !== undefined && o.resample > 0 ? { resample: o.resample } : {}),
    ...(o.resampleStages !== undefined ? { resampleStages: o.resampleStages.split(",").map((x) => x.trim()) } : {}),
    ...(o.stageTemperature !== undefined ? { stageTemperature: stageTemperatures(o.stageTemperature) } : {}),
  });
}
