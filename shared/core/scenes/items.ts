import { formatStructured } from "../protocol/stages.ts";
import { familyLabel, questionText, sampleQuestion, solve, type QuestionSpec } from "./questions.ts";
import { createRng, type Rng } from "../random.ts";
import { sampleScene, type Scene } from "./scene.ts";

/** One evaluation/training item: a scene, a question about it and the gold structured answer. */
export interface SceneItem {
  id: string;
  scene: Scene;
  spec: QuestionSpec;
  question: string;
  answer: string;
  family: string;
  /** The gold structured response, all four tagged stages. */
  response: string;
}

/** Each item draws from its own stream, so item i is the same whatever the set size. */
export const itemRng = (seed: number, index: number): Rng => createRng(`scene-set:${seed}:${index}`);

export function sampleItemFor(
  rng: Rng,
  scene: Scene,
): { spec: QuestionSpec; question: string; answer: string; family: string; response: string } {
  for (;;) {
    const spec = sampleQuestion(rng, scene);
    if (!spec) continue;
    const gold = solve(spec, scene);
    return {
      spec,
      question: questionText(spec),
      answer: gold.answer,
      family: familyLabel(spec),
      response: formatStructured(gold.stages),
    };
  }
}

export function generateItem(seed: number, index: number): SceneItem {
  const rng = itemRng(seed, index);
  const scene = sampleScene(rng);
  return { id: `s${seed}-${String(index).padStart(6, "0")}`, scene, ...sampleItemFor(rng, scene) };
}
