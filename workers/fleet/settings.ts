/**
 * The search settings of a run, checked: `submit` records them, `ask` and `eval` search with
 * them. Free of BullMQ, so that the in-process commands load no queue code.
 */
import { parseSearchParams, SearchError, type SearchParams } from "../../shared/core/search/index.ts";
import { JUDGE_MODES, type JudgeMode } from "./model-host.ts";
import type { RunSettings } from "./records.ts";
import { UsageError } from "./usage-error.ts";

export interface SubmitSettingsInput {
  strategy: string;
  beam: number;
  seed: number;
  judgeMode: string;
  maxStageTokens?: number;
  maxSentenceSteps?: number;
}

/** Validates search settings; throws UsageError naming what is wrong. */
export function validateSettings(input: SubmitSettingsInput): RunSettings {
  if (!(JUDGE_MODES as readonly string[]).includes(input.judgeMode)) {
    throw new UsageError(`judge mode must be one of ${JUDGE_MODES.join(", ")}, got ${JSON.stringify(input.judgeMode)}`);
  }
  let params: SearchParams;
  try {
    params = parseSearchParams({
      itemId: "settings-check",
      strategy: input.strategy,
      beam: input.beam,
      seed: input.seed,
      ...(input.maxStageTokens !== undefined ? { maxStageTokens: input.maxStageTokens } : {}),
      ...(input.maxSentenceSteps !== undefined ? { maxSentenceSteps: input.maxSentenceSteps } : {}),
    });
  } catch (err) {
    if (err instanceof SearchError) {
      throw new UsageError(
        err.message.replace(/^search for item "settings-check": invalid search parameters: /, "invalid search settings: "),
      );
    }
    throw err;
  }
  return {
    strategy: params.strategy,
    beam: params.beam,
    seed: params.seed,
    judgeMode: input.judgeMode as JudgeMode,
    maxStageTokens: params.maxStageTokens,
    maxSentenceSteps: params.maxSentenceSteps,
  };
}
