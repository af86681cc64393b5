/** The search flags, the same on `ask`, `eval` and `submit`. */
import { Command, Option } from "commander";
import { STRATEGIES } from "../../../shared/core/search/types.ts";
import { JUDGE_MODES } from "../../../workers/fleet/model-host.ts";
import { validateSettings } from "../../../workers/fleet/settings.ts";
import type { RunSettings } from "../../../workers/fleet/records.ts";
import { intOption } from "./common.ts";

export interface SearchCliOptions {
  strategy: string;
  beam: number;
  judge: string;
  seed: number;
  maxStageTokens?: number;
}

export function addSearchOptions(command: Command): Command {
  return command
    .addOption(new Option("--strategy <name>", `search strategy: ${STRATEGIES.join(", ")}`).default("stage"))
    .option("--beam <n>", "candidates per step (best-of-N: N)", intOption("--beam", -1_000_000), 4)
    .addOption(new Option("--judge <mode>", `judge mode: ${JUDGE_MODES.join(", ")}`).default("score"))
    .option(
      "--seed <n>",
      "seed; the same seed gives an item the same answer, in process or on any worker",
      intOption("--seed", -1_000_000),
      1,
    )
    .option(
      "--max-stage-tokens <n>",
      "token cap of one stage or sentence candidate",
      intOption("--max-stage-tokens", -1_000_000),
    );
}

/** Checked settings from the flags (a bad strategy, beam or judge mode is a usage error). */
export const searchSettings = (o: SearchCliOptions): RunSettings =>
  validateSettings({
    strategy: o.strategy,
    beam: o.beam,
    seed: o.seed,
    judgeMode: o.judge,
    ...(o.maxStageTokens !== undefined ? { maxStageTokens: o.maxStageTokens } : {}),
  });
