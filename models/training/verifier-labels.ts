/**
 * What the process verifier learns at each marker. A step is good when the candidate, up to and
 * including that step, is still the right text: the steps are cut with the engine's own
 * `splitSteps`, and "right" is the pair's right candidate, which the scene generator knows.
 * Once a step is wrong every later step is too (a chain is wrong from its first mistake on), so
 * the candidate's last step says whether the whole candidate is right and `min` pooling finds the
 * first mistake.
 */
import { describeObject, type Scene } from "../../shared/core/scenes/scene.ts";
import { splitSteps } from "../../shared/core/verifier/steps.ts";
import type { StepRule } from "../../shared/core/verifier/template.ts";

/** `good[k]`: steps 0..k of `candidate` equal those of `right`. */
export function stepLabels(candidate: string, right: string, rule: StepRule): { steps: string[]; good: boolean[] } {
  const steps = splitSteps(candidate, rule);
  const rightSteps = splitSteps(right, rule);
  let stillRight = true;
  const good = steps.map((step, k) => {
    stillRight &&= step === rightSteps[k];
    return stillRight;
  });
  return { steps, good };
}

const NAMED_OBJECT_RE = /\b(small|large) (\w+) (circle|square|triangle)\b/g;

/**
 * What a wrong caption gets wrong, as the policy's judge evaluation splits it: it names an object
 * the image does not hold (a presence check finds it), or only a different number of objects than
 * the right caption (counting, or the order of the objects, finds it).
 */
export function captionMistake(
  wrong: string,
  right: string,
  scene: Scene,
): "absent object" | "fewer objects" | "more objects" | "other" {
  const held = new Set(scene.objects.map(describeObject));
  const named = (text: string) => [...text.matchAll(NAMED_OBJECT_RE)].map((m) => m[0]);
  const inWrong = named(wrong);
  if (inWrong.some((o) => !held.has(o))) return "absent object";
  const inRight = named(right).length;
  if (inWrong.length === inRight) return "other";
  return inWrong.length < inRight ? "fewer objects" : "more objects";
}
