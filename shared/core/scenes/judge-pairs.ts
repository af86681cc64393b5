import { closeTag, formatStructured, openTag, STAGES, type Stage, type StageTexts } from "../protocol/stages.ts";
import { splitSentences } from "../protocol/sentences.ts";
import { perturbScene } from "./perturb.ts";
import { sampleQuestion, solve, type QuestionSpec } from "./questions.ts";
import type { Rng } from "../random.ts";
import type { Scene } from "./scene.ts";

/** What a judge prompt compares: one stage, whole answers (best-of-N) or next sentences. */
export const JUDGE_KINDS = ["SUMMARY", "CAPTION", "REASONING", "CONCLUSION", "all", "sentence"] as const;
export type JudgeKind = (typeof JUDGE_KINDS)[number];

export interface JudgePair {
  kind: JudgeKind;
  /** The accepted text before the compared candidates, exactly as the search passes it. */
  hint: string;
  good: string;
  bad: string;
}

export interface CheckExample {
  hint: string;
  candidate: string;
  correct: boolean;
}

const tagged = (stage: Stage, content: string) => `${openTag(stage)}${content}${closeTag(stage)}`;

/** The tagged stages before `stage`: the prefix a stage candidate continues. */
export const stagesBefore = (stages: StageTexts, stage: Stage): string =>
  STAGES.slice(0, STAGES.indexOf(stage))
    .map((s) => tagged(s, stages[s]))
    .join("");

const TRIES = 40;

/** A consistent-but-wrong response: what the model writes after misreading the scene. */
function misreadResponse(rng: Rng, spec: QuestionSpec, scene: Scene, mustDiffer: Stage): StageTexts | null {
  const gold = solve(spec, scene).stages;
  for (let i = 0; i < TRIES; i++) {
    const wrong = solve(spec, perturbScene(rng, scene)).stages;
    if (wrong[mustDiffer] !== gold[mustDiffer]) return wrong;
  }
  return null;
}

/** A response with an arithmetic slip or a flipped decision in REASONING, carried through. */
function slipResponse(rng: Rng, spec: QuestionSpec, scene: Scene): StageTexts | null {
  const gold = solve(spec, scene).stages;
  const wrong = solve(spec, scene, { slip: rng.pick([-1, 1, 1, 2]) }).stages;
  return wrong.REASONING !== gold.REASONING ? wrong : null;
}

function wrongResponse(rng: Rng, spec: QuestionSpec, scene: Scene): StageTexts | null {
  return rng.chance(0.6) ? misreadResponse(rng, spec, scene, "CAPTION") : slipResponse(rng, spec, scene);
}

function wrongSummary(rng: Rng, scene: Scene, gold: StageTexts): string | null {
  if (rng.chance(0.4)) return `The answer is ${gold.CONCLUSION}.`;
  for (let i = 0; i < TRIES; i++) {
    const other = sampleQuestion(rng, scene);
    if (!other) continue;
    const summary = solve(other, scene).stages.SUMMARY;
    if (summary !== gold.SUMMARY) return summary;
  }
  return null;
}

/** One (good, bad) pair of the given kind, or null when this item cannot yield one. */
export function makeJudgePair(rng: Rng, kind: JudgeKind, spec: QuestionSpec, scene: Scene): JudgePair | null {
  const gold = solve(spec, scene).stages;
  if (kind === "all") {
    const wrong = wrongResponse(rng, spec, scene);
    return wrong && { kind, hint: "", good: formatStructured(gold), bad: formatStructured(wrong) };
  }
  if (kind === "sentence") {
    const wrong = wrongResponse(rng, spec, scene);
    if (!wrong) return null;
    const good = splitSentences(formatStructured(gold));
    const bad = splitSentences(formatStructured(wrong));
    const at = good.findIndex((sentence, i) => sentence !== bad[i]);
    if (at < 0 || bad[at] === undefined) return null;
    return { kind, hint: good.slice(0, at).join(""), good: good[at]!, bad: bad[at]! };
  }
  let badContent: string | null;
  switch (kind) {
    case "SUMMARY":
      badContent = wrongSummary(rng, scene, gold);
      break;
    case "CAPTION":
      badContent = misreadResponse(rng, spec, scene, "CAPTION")?.CAPTION ?? null;
      break;
    case "REASONING":
      badContent =
        (rng.chance(0.5) ? slipResponse(rng, spec, scene) : misreadResponse(rng, spec, scene, "REASONING"))?.REASONING ?? null;
      break;
    case "CONCLUSION":
      badContent = solve(spec, scene, { slip: rng.pick([-1, 1]) }).stages.CONCLUSION;
      if (badContent === gold.CONCLUSION) badContent = null;
      break;
  }
  return badContent === null
    ? null
    : { kind, hint: stagesBefore(gold, kind), good: tagged(kind, gold[kind]), bad: tagged(kind, badContent) };
}

/** A REASONING candidate to be judged correct or incorrect, given the accepted stages. */
export function makeCheckExample(rng: Rng, spec: QuestionSpec, scene: Scene): CheckExample | null {
  const gold = solve(spec, scene).stages;
  const hint = stagesBefore(gold, "REASONING");
  if (rng.chance(0.5)) return { hint, candidate: tagged("REASONING", gold.REASONING), correct: true };
  const wrong = rng.chance(0.5) ? slipResponse(rng, spec, scene) : misreadResponse(rng, spec, scene, "REASONING");
  return wrong && { hint, candidate: tagged("REASONING", wrong.REASONING), correct: false };
}
