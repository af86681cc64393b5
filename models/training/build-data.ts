/**
 * Builds the training and held-out data for the bundled model (see DATA_FORMAT.md) and the
 * text files of the model folder. Everything is rendered and tokenized here, with the same
 * prompt code and tokenizer that inference uses, so PyTorch only sees ids and pixels.
 *
 *   npx tsx models/training/build-data.ts [--images 20000] [--heldout 4000] [--out models/.work/data]
 */
import { createWriteStream } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Tokenizer } from "@huggingface/tokenizers";
import cliProgress from "cli-progress";
import sharp from "sharp";
import { expandImageTokens, renderUserPrompt } from "../../shared/core/prompts/chat.ts";
import { renderJudgeText, verdictText } from "../../shared/core/prompts/templates.ts";
import { STAGES, closeTag, openTag } from "../../shared/core/protocol/stages.ts";
import { createRng, type Rng } from "../../shared/core/random.ts";
import { sampleItemFor, generateItem } from "../../shared/core/scenes/items.ts";
import { JUDGE_KINDS, makeCheckExample, makeJudgePair, type JudgeKind } from "../../shared/core/scenes/judge-pairs.ts";
import { renderScenePng } from "../../shared/io/scene-files.ts";
import { COLORS, IMAGE_SIZE, SHAPES, SIZES, type Scene } from "../../shared/core/scenes/scene.ts";
import { JUDGE_TEMPLATES, TOKENIZER_CONFIG, buildTokenizerJson } from "./text-files.ts";

export const MODEL_DIR = path.resolve(import.meta.dirname, "../stagebeam-tiny");
export const IMAGE_SEQ_LENGTH = 64;
/** The vision encoder's output grid (IMAGE_SEQ_LENGTH = GRID × GRID). */
export const GRID = 8;
export const CELL_CLASSES = 1 + SIZES.length * COLORS.length * SHAPES.length;
export const TRAIN_SEED = 1000;
export const HELDOUT_SEED = 2000;
/** The example kind of held-out image i is HELDOUT_KINDS[i % HELDOUT_KINDS.length]. */
export const HELDOUT_KINDS = [...JUDGE_KINDS, "check"] as const;

/** The stream an image's extra examples (second question, judge or check example) are drawn from. */
/**
 * The meta.json fields every data folder shares (the policy's and the verifier's), from the
 * vocabulary by id and the tokenizer's id lookup (DATA_FORMAT.md).
 */
export function metaOf(vocabList: readonly string[], id: (token: string) => number) {
  return {
    vocab_size: vocabList.length,
    pad_id: id("<pad>"),
    bos_id: id("<bos>"),
    eos_id: id("<eos>"),
    image_token_id: id("<image>"),
    image_seq_length: IMAGE_SEQ_LENGTH,
    grid: GRID,
    cell_classes: CELL_CLASSES,
    cell_attributes: { sizes: SIZES, colors: COLORS, shapes: SHAPES },
    image_size: IMAGE_SIZE,
    image_mean: [0.5, 0.5, 0.5],
    image_std: [0.5, 0.5, 0.5],
    stage_tag_ids: Object.fromEntries(STAGES.flatMap((s) => [openTag(s), closeTag(s)]).map((t) => [t, id(t)])),
  };
}

export const extraRng = (split: string, seed: number, image: number): Rng => createRng(`${split}-extra:${seed}:${image}`);

/** How often each kind of judge example is drawn for training; CAPTION and REASONING matter most. */
const JUDGE_WEIGHTS: [JudgeKind | "check", number][] = [
  ["CAPTION", 0.3],
  ["REASONING", 0.2],
  ["check", 0.14],
  ["SUMMARY", 0.06],
  ["CONCLUSION", 0.08],
  ["all", 0.1],
  ["sentence", 0.12],
];

interface TextLine {
  image: number;
  prompt: string;
  target: string;
  kind: string;
  family: string;
  answer?: string;
  label?: string;
  /** Compare lines: the two candidates in prompt order, and which one is wrong. */
  pair?: { first: string; second: string; bad: 1 | 2 };
}

const tokens = { bos_token: "<bos>", eos_token: "<eos>", image_token: "<image>" };
const prompt = (text: string) => renderUserPrompt(TOKENIZER_CONFIG.chat_template, tokens, text);

function weightedKind(rng: Rng): JudgeKind | "check" {
  let r = rng.next();
  for (const [kind, weight] of JUDGE_WEIGHTS) {
    r -= weight;
    if (r < 0) return kind;
  }
  return "CAPTION";
}

/** Both orders of a pair, so the judge cannot learn a position. */
function judgeLines(
  image: number,
  question: string,
  kind: JudgeKind,
  hint: string,
  good: string,
  bad: string,
  family: string,
): TextLine[] {
  return ([1, 2] as const).map((goodAt) => {
    const [first, second] = goodAt === 1 ? [good, bad] : [bad, good];
    const text = renderJudgeText(JUDGE_TEMPLATES, question, { kind: "compare", template: kind, hint, first, second });
    const pair = { first, second, bad: goodAt === 1 ? (2 as const) : (1 as const) };
    return {
      image,
      prompt: prompt(text),
      target: verdictText(JUDGE_TEMPLATES, goodAt),
      kind: `judge:${kind}`,
      family,
      label: String(goodAt),
      pair,
    };
  });
}

function checkLine(image: number, question: string, hint: string, candidate: string, correct: boolean, family: string): TextLine {
  const text = renderJudgeText(JUDGE_TEMPLATES, question, { kind: "check", hint, candidate });
  const label = correct ? "correct" : "incorrect";
  return { image, prompt: prompt(text), target: JUDGE_TEMPLATES.check_answers[label], kind: "check", family, label };
}

/** A judge example as the data draws it: a fresh question about the scene and a pair for it (null when none). */
export function judgeExample(rng: Rng, scene: Scene, kind: JudgeKind) {
  const item = sampleItemFor(rng, scene);
  const pair = makeJudgePair(rng, kind, item.spec, scene);
  return pair && { item, pair };
}

function exampleLines(rng: Rng, image: number, scene: Scene, kind: JudgeKind | "check"): TextLine[] {
  if (kind === "check") {
    const item = sampleItemFor(rng, scene);
    const example = makeCheckExample(rng, item.spec, scene);
    return example ? [checkLine(image, item.question, example.hint, example.candidate, example.correct, item.family)] : [];
  }
  const example = judgeExample(rng, scene, kind);
  return example
    ? judgeLines(image, example.item.question, kind, example.pair.hint, example.pair.good, example.pair.bad, example.item.family)
    : [];
}

export async function rawPixels(scene: Scene): Promise<Buffer> {
  // Through PNG and back, exactly as an image reaches the engine.
  return sharp(await renderScenePng(scene))
    .removeAlpha()
    .raw()
    .toBuffer();
}

/**
 * What each vision-grid cell holds: 0 for no object centre, else 1 + the object's
 * (size, colour, shape) index. Training uses it as a dense auxiliary target for the vision
 * encoder; where two small objects' centres share a cell, the first one wins.
 */
export function cellLabels(scene: Scene): Uint8Array {
  const cells = new Uint8Array(GRID * GRID);
  const cellSize = IMAGE_SIZE / GRID;
  for (const o of scene.objects) {
    const cell = Math.floor(o.y / cellSize) * GRID + Math.floor(o.x / cellSize);
    if (cells[cell] !== 0) continue;
    cells[cell] = 1 + (SIZES.indexOf(o.size) * COLORS.length + COLORS.indexOf(o.color)) * SHAPES.length + SHAPES.indexOf(o.shape);
  }
  return cells;
}

function indexOfRun(haystack: readonly number[], needle: readonly number[], from: number): number {
  outer: for (let i = from; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Where the two candidates of a compare line sit in its ids, and the run of the wrong one's
 * tokens that differs from the right one (common prefix and suffix removed; a pure deletion
 * marks the token where the missing text would be): the dense auxiliary target of the judge.
 */
function candidateSpans(ids: readonly number[], first: readonly number[], second: readonly number[], bad: 1 | 2) {
  const at1 = indexOfRun(ids, first, 0);
  const at2 = at1 < 0 ? -1 : indexOfRun(ids, second, at1 + first.length);
  if (at2 < 0) throw new Error("a judge candidate's tokens are not found in its prompt");
  const [badIds, goodIds, badAt] = bad === 1 ? [first, second, at1] : [second, first, at2];
  let prefix = 0;
  while (prefix < badIds.length && prefix < goodIds.length && badIds[prefix] === goodIds[prefix]) prefix++;
  let suffix = 0;
  while (
    suffix < badIds.length - prefix &&
    suffix < goodIds.length - prefix &&
    badIds[badIds.length - 1 - suffix] === goodIds[goodIds.length - 1 - suffix]
  )
    suffix++;
  const start = badAt + Math.min(prefix, badIds.length - 1);
  const end = Math.max(start + 1, badAt + badIds.length - suffix);
  return {
    cands: [
      [at1, at1 + first.length],
      [at2, at2 + second.length],
    ],
    wrong: [start, end],
  };
}

interface SplitPlan {
  name: "train" | "heldout";
  seed: number;
  images: number;
  /** Builds the lines for one image. */
  lines: (rng: Rng, image: number, scene: Scene, answerItem: ReturnType<typeof generateItem>) => TextLine[];
}

async function buildSplit(out: string, plan: SplitPlan): Promise<TextLine[]> {
  const pixels = createWriteStream(path.join(out, `${plan.name}_images.u8`));
  const cells: Uint8Array[] = [];
  const lines: TextLine[] = [];
  const bar = new cliProgress.SingleBar(
    { format: `${plan.name} {bar} {value}/{total} images | ETA {eta}s` },
    cliProgress.Presets.shades_classic,
  );
  bar.start(plan.images, 0);
  for (let i = 0; i < plan.images; i++) {
    const item = generateItem(plan.seed, i);
    const rng = extraRng(plan.name, plan.seed, i);
    lines.push(...plan.lines(rng, i, item.scene, item));
    cells.push(cellLabels(item.scene));
    if (!pixels.write(await rawPixels(item.scene))) await new Promise<void>((resolve) => pixels.once("drain", () => resolve()));
    bar.increment();
  }
  bar.stop();
  await new Promise<void>((resolve, reject) => pixels.end((error?: Error | null) => (error ? reject(error) : resolve())));
  await writeFile(path.join(out, `${plan.name}_cells.u8`), Buffer.concat(cells));
  return lines;
}

const answerLine = (image: number, item: ReturnType<typeof generateItem>): TextLine => ({
  image,
  prompt: prompt(item.question),
  target: item.response,
  kind: "answer",
  family: item.family,
  answer: item.answer,
});

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      images: { type: "string", default: "20000" },
      heldout: { type: "string", default: "4000" },
      out: { type: "string", default: path.resolve(import.meta.dirname, "../.work/data") },
    },
  });
  const out = values.out;
  await mkdir(out, { recursive: true });
  await mkdir(path.join(MODEL_DIR, "golden"), { recursive: true });

  const train = await buildSplit(out, {
    name: "train",
    seed: TRAIN_SEED,
    images: Number(values.images),
    // Per image: its question, a second question, and one judge or check example.
    lines: (rng, image, scene, item) => [
      answerLine(image, item),
      answerLine(image, { ...item, ...sampleItemFor(rng, scene) }),
      ...exampleLines(rng, image, scene, weightedKind(rng)),
    ],
  });
  const heldout = await buildSplit(out, {
    name: "heldout",
    seed: HELDOUT_SEED,
    images: Number(values.heldout),
    lines: (rng, image, scene, item) => [
      answerLine(image, item),
      ...exampleLines(rng, image, scene, HELDOUT_KINDS[image % HELDOUT_KINDS.length]!),
    ],
  });

  const tokenizerJson = buildTokenizerJson([...train, ...heldout].flatMap((l) => [l.prompt, l.target]));
  await writeFile(path.join(MODEL_DIR, "tokenizer.json"), JSON.stringify(tokenizerJson, null, 1));
  await writeFile(path.join(MODEL_DIR, "tokenizer_config.json"), JSON.stringify(TOKENIZER_CONFIG, null, 2));
  await writeFile(path.join(MODEL_DIR, "judge_templates.json"), JSON.stringify(JUDGE_TEMPLATES, null, 2));

  const tokenizer = new Tokenizer(tokenizerJson, TOKENIZER_CONFIG);
  const vocab = tokenizerJson.model.vocab;
  const id = (token: string): number => {
    const value = vocab[token];
    if (value === undefined) throw new Error(`token '${token}' missing from the vocabulary`);
    return value;
  };
  const imageTokenId = id("<image>");
  const encode = (text: string) => tokenizer.encode(text, { add_special_tokens: false }).ids;
  let maxLen = 0;
  const writeSplit = async (name: string, lines: TextLine[]) => {
    const json = lines.map((line) => {
      const promptIds = expandImageTokens(encode(line.prompt), imageTokenId, IMAGE_SEQ_LENGTH);
      const ids = [...promptIds, ...encode(line.target), id("<eos>")];
      maxLen = Math.max(maxLen, ids.length);
      return JSON.stringify({
        image: line.image,
        ids,
        target_start: promptIds.length,
        kind: line.kind,
        family: line.family,
        ...(line.answer !== undefined ? { answer_ids: encode(line.answer) } : {}),
        ...(line.label !== undefined ? { label: line.label } : {}),
        ...(line.pair !== undefined
          ? candidateSpans(promptIds, encode(line.pair.first), encode(line.pair.second), line.pair.bad)
          : {}),
      });
    });
    await writeFile(path.join(out, `${name}.jsonl`), `${json.join("\n")}\n`);
  };
  await writeSplit("train", train);
  await writeSplit("heldout", heldout);

  const firstToken = (text: string) => encode(text)[0]!;
  const vocabList: string[] = [];
  for (const [token, index] of Object.entries(vocab)) vocabList[index] = token;
  await writeFile(
    path.join(out, "meta.json"),
    JSON.stringify(
      {
        ...metaOf(vocabList, id),
        judge_choice_ids: { "1": firstToken(JUDGE_TEMPLATES.choices["1"]), "2": firstToken(JUDGE_TEMPLATES.choices["2"]) },
        check_ids: { correct: firstToken("correct"), incorrect: firstToken("incorrect") },
        vocab: vocabList,
        max_seq_len: maxLen,
      },
      null,
      1,
    ),
  );

  // The golden file's input: the first held-out item, its image and its answer prompt.
  const golden = generateItem(HELDOUT_SEED, 0);
  await writeFile(path.join(MODEL_DIR, "golden", "image.png"), await renderScenePng(golden.scene));
  const goldenPromptIds = expandImageTokens(encode(prompt(golden.question)), imageTokenId, IMAGE_SEQ_LENGTH);
  await writeFile(path.join(out, "golden.json"), JSON.stringify({ image: 0, question: golden.question, ids: goldenPromptIds }));
  await writeFile(path.join(out, "READY"), `${new Date().toISOString()}\n`);
  const counts: Record<string, number> = {};
  for (const line of train) counts[line.kind] = (counts[line.kind] ?? 0) + 1;
  console.log(
    `train: ${train.length} sequences ${JSON.stringify(counts)}; heldout: ${heldout.length}; vocab ${vocabList.length}; longest ${maxLen} tokens`,
  );
}

// Imported by the verifier's data builder for its scenes, pairs and cells; run as a script, it builds.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
