import type { StageTexts } from "../protocol/stages.ts";
import { listObjects, matches, plural, singular, type Filter } from "./filters.ts";
import type { Rng } from "../random.ts";
import { COLORS, SHAPES, SIZES, type Scene, type SceneObject } from "./scene.ts";

export const FAMILIES = ["count", "subtract", "exist", "attribute", "compare"] as const;
export type Family = (typeof FAMILIES)[number];

/** What is asked, independent of the scene it is asked about. */
export type QuestionSpec = (
  | { family: "count"; filter: Filter }
  | { family: "subtract"; filter: Filter }
  /** `listedBy` is the broader group the caption lists (e.g. all purple objects). */
  | { family: "exist"; target: Filter; listedBy: Filter }
  | { family: "attribute"; ask: "color" | "shape"; by: Filter }
  | { family: "compare"; more: Filter; than: Filter }
) & { options?: string[] };

export const LETTERS = ["A", "B", "C", "D"] as const;

export const familyLabel = (spec: QuestionSpec): string => (spec.options ? `${spec.family}-mc` : spec.family);

function baseQuestion(spec: QuestionSpec): string {
  switch (spec.family) {
    case "count":
      return `How many ${plural(spec.filter)} are there?`;
    case "subtract":
      return `Subtract all ${plural(spec.filter)}. How many objects are left?`;
    case "exist":
      return `Is there a ${singular(spec.target)}?`;
    case "attribute":
      return spec.ask === "color" ? `What color is the ${singular(spec.by)}?` : `What shape is the ${singular(spec.by)}?`;
    case "compare":
      return `Are there more ${plural(spec.more)} than ${plural(spec.than)}?`;
  }
}

export function questionText(spec: QuestionSpec): string {
  const q = baseQuestion(spec);
  if (!spec.options) return q;
  const options = spec.options.map((o, i) => `${LETTERS[i]}. ${o}`).join(" ");
  return `${q} Options: ${options}`;
}

/**
 * Deliberate mistakes used to build wrong-but-plausible candidates for the judge:
 * `slip` shifts the last arithmetic result (or flips the last decision).
 */
export interface SolveOptions {
  slip?: number;
}

const count = (scene: Scene, f: Filter): SceneObject[] => scene.objects.filter((o) => matches(o, f));

/** "1 + 1 + 1 = 3"; the slip shifts only the written total. */
function tally(n: number, slip = 0): string {
  if (n === 0) return `${slip === 0 ? 0 : Math.abs(slip)}`;
  return `${Array(n).fill("1").join(" + ")} = ${n + slip}`;
}

interface Solution {
  summary: string;
  caption: string;
  reasoning: string;
  value: string;
}

function flip(value: string): string {
  return value === "yes" ? "no" : "yes";
}

function solveBase(spec: QuestionSpec, scene: Scene, slip: number): Solution {
  switch (spec.family) {
    case "count": {
      const found = count(scene, spec.filter);
      const n = found.length;
      const caption =
        n > 0
          ? `The ${plural(spec.filter)} in the image are: ${listObjects(found)}.`
          : `There are no ${plural(spec.filter)} in the image.`;
      const reasoning =
        n > 0
          ? `Counting them one by one: ${tally(n, slip)}. So the number of ${plural(spec.filter)} is ${n + slip}.`
          : `None of the objects is a ${singular(spec.filter)}, so the number of ${plural(spec.filter)} is ${Math.abs(slip)}.`;
      return {
        summary: `I will find the ${plural(spec.filter)} in the image and count them.`,
        caption,
        reasoning,
        value: String(n > 0 ? n + slip : Math.abs(slip)),
      };
    }
    case "subtract": {
      const total = scene.objects.length;
      const removed = count(scene, spec.filter);
      const k = removed.length;
      const left = total - k + slip;
      const listed =
        k > 0
          ? ` The ${plural(spec.filter)} among them are: ${listObjects(removed)}.`
          : ` None of them is a ${singular(spec.filter)}.`;
      return {
        summary: `I will list all objects, find the ${plural(spec.filter)}, and subtract them from the total.`,
        caption: `The objects in the image are: ${listObjects(scene.objects)}.${listed}`,
        reasoning: `Counting all objects: ${tally(total)}. Counting the ${plural(spec.filter)}: ${tally(k)}. Then ${total} - ${k} = ${left}. So ${left} objects are left.`,
        value: String(left),
      };
    }
    case "exist": {
      const group = count(scene, spec.listedBy);
      const exists = group.some((o) => matches(o, spec.target));
      const value = slip === 0 ? (exists ? "yes" : "no") : flip(exists ? "yes" : "no");
      const caption =
        group.length > 0
          ? `The ${plural(spec.listedBy)} in the image are: ${listObjects(group)}.`
          : `There are no ${plural(spec.listedBy)} in the image.`;
      const said = value === "yes";
      const reasoning =
        group.length === 0 && !said
          ? `Without any ${plural(spec.listedBy)} there can be no ${singular(spec.target)}, so the answer is no.`
          : said
            ? `One of them is a ${singular(spec.target)}, so the answer is yes.`
            : `None of them is a ${singular(spec.target)}, so the answer is no.`;
      return {
        summary: `I will look at the ${plural(spec.listedBy)} and check whether one is a ${singular(spec.target)}.`,
        caption,
        reasoning,
        value,
      };
    }
    case "attribute": {
      const [object] = count(scene, spec.by);
      const described = object ? `a ${object.size} ${object.color} ${object.shape}` : `not in the image`;
      const truth = object ? object[spec.ask] : "none";
      const pool: readonly string[] = spec.ask === "color" ? COLORS : SHAPES;
      const value = slip === 0 ? truth : pool[(pool.indexOf(truth) + Math.max(1, Math.abs(slip))) % pool.length]!;
      return {
        summary: `I will find the ${singular(spec.by)} and report its ${spec.ask}.`,
        caption: `The ${singular(spec.by)} is ${described}.`,
        reasoning: `Its ${spec.ask} is ${value}.`,
        value,
      };
    }
    case "compare": {
      const a = count(scene, spec.more).length;
      const b = count(scene, spec.than).length;
      const truth = a > b ? "yes" : "no";
      const value = slip === 0 ? truth : flip(truth);
      const part = (f: Filter) => {
        const found = count(scene, f);
        return found.length > 0 ? `The ${plural(f)} are: ${listObjects(found)}.` : `There are no ${plural(f)}.`;
      };
      const verdict =
        value === "yes" ? `${a} is more than ${b}, so the answer is yes.` : `${a} is not more than ${b}, so the answer is no.`;
      return {
        summary: `I will count the ${plural(spec.more)} and the ${plural(spec.than)} and compare the two numbers.`,
        caption: `${part(spec.more)} ${part(spec.than)}`,
        reasoning: `Counting the ${plural(spec.more)}: ${tally(a)}. Counting the ${plural(spec.than)}: ${tally(b)}. ${verdict}`,
        value,
      };
    }
  }
}

/**
 * The gold structured response to `spec` for `scene`. Called on a perturbed scene (or with a
 * slip) it gives the consistent-but-wrong responses the judge learns to reject.
 */
export function solve(spec: QuestionSpec, scene: Scene, options: SolveOptions = {}): { stages: StageTexts; answer: string } {
  const base = solveBase(spec, scene, options.slip ?? 0);
  if (!spec.options) {
    return {
      stages: { SUMMARY: base.summary, CAPTION: base.caption, REASONING: base.reasoning, CONCLUSION: base.value },
      answer: base.value,
    };
  }
  const index = spec.options.indexOf(base.value);
  const letter = index >= 0 ? LETTERS[index]! : LETTERS[0];
  const choice =
    index >= 0
      ? ` The answer ${base.value} is option ${letter}.`
      : ` The answer ${base.value} is not among the options, so I guess option ${letter}.`;
  return {
    stages: {
      SUMMARY: `${base.summary} Then I will choose the matching option.`,
      CAPTION: base.caption,
      REASONING: base.reasoning + choice,
      CONCLUSION: letter,
    },
    answer: letter,
  };
}

function sampleFilter(rng: Rng, scene: Scene): Filter {
  const kinds: (keyof Filter)[][] = [["color"], ["shape"], ["size"], ["size", "shape"], ["color", "shape"], ["size", "color"]];
  const keys = rng.pick(kinds);
  // Mostly describe something that is there, so that counts of zero do not dominate.
  const source: Filter = rng.chance(0.7)
    ? rng.pick(scene.objects)
    : { size: rng.pick(SIZES), color: rng.pick(COLORS), shape: rng.pick(SHAPES) };
  return Object.fromEntries(keys.map((k) => [k, source[k]])) as Filter;
}

function sampleExist(rng: Rng, scene: Scene): QuestionSpec {
  const present = rng.chance(0.5);
  const keys = rng.pick<(keyof Filter)[]>([
    ["size", "color", "shape"],
    ["color", "shape"],
    ["size", "color", "shape"],
  ]);
  let target: Filter;
  do {
    const source: Filter = present
      ? rng.pick(scene.objects)
      : { size: rng.pick(SIZES), color: rng.pick(COLORS), shape: rng.pick(SHAPES) };
    target = Object.fromEntries(keys.map((k) => [k, source[k]])) as Filter;
  } while (!present && count(scene, target).length > 0);
  return { family: "exist", target, listedBy: { color: target.color! } };
}

function sampleAttribute(rng: Rng, scene: Scene): QuestionSpec | null {
  const unique = (f: Filter) => count(scene, f).length === 1;
  const choices: QuestionSpec[] = [];
  for (const shape of SHAPES) if (unique({ shape })) choices.push({ family: "attribute", ask: "color", by: { shape } });
  for (const color of COLORS) if (unique({ color })) choices.push({ family: "attribute", ask: "shape", by: { color } });
  for (const o of scene.objects) {
    const by = { size: o.size, shape: o.shape };
    if (!unique({ shape: o.shape }) && unique(by)) choices.push({ family: "attribute", ask: "color", by });
  }
  return choices.length > 0 ? rng.pick(choices) : null;
}

function sampleCompare(rng: Rng, scene: Scene): QuestionSpec {
  if (rng.chance(0.5)) {
    const [more, than] = rng.shuffle(SHAPES);
    return { family: "compare", more: { shape: more! }, than: { shape: than! } };
  }
  const present = [...new Set(scene.objects.map((o) => o.color))];
  const more = rng.chance(0.8) ? rng.pick(present) : rng.pick(COLORS);
  const than = rng.pick(COLORS.filter((c) => c !== more));
  return { family: "compare", more: { color: more }, than: { color: than } };
}

function sampleOptions(rng: Rng, spec: QuestionSpec, answer: string): string[] {
  if (answer === "yes" || answer === "no") return rng.shuffle(["yes", "no"]);
  if (spec.family === "attribute") {
    const pool: readonly string[] = spec.ask === "color" ? COLORS : SHAPES;
    const others = rng.shuffle(pool.filter((v) => v !== answer)).slice(0, spec.ask === "color" ? 3 : 2);
    return rng.shuffle([answer, ...others]);
  }
  const n = Number(answer);
  const start = Math.max(0, n - rng.int(0, 3));
  return [0, 1, 2, 3].map((i) => String(start + i));
}

/** Draws a question about `scene`, or null when the drawn family does not fit it. */
export function sampleQuestion(rng: Rng, scene: Scene, multipleChoiceRate = 0.25): QuestionSpec | null {
  const family = rng.pick(FAMILIES);
  let spec: QuestionSpec | null;
  switch (family) {
    case "count":
      spec = { family, filter: sampleFilter(rng, scene) };
      break;
    case "subtract":
      spec = { family, filter: sampleFilter(rng, scene) };
      break;
    case "exist":
      spec = sampleExist(rng, scene);
      break;
    case "attribute":
      spec = sampleAttribute(rng, scene);
      break;
    case "compare":
      spec = sampleCompare(rng, scene);
      break;
  }
  if (spec && rng.chance(multipleChoiceRate)) {
    spec = { ...spec, options: sampleOptions(rng, spec, solve(spec, scene).answer) };
  }
  return spec;
}
