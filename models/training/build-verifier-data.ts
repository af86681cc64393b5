/**
 * Builds the process verifier's data (`models/.work/verifier-data/`, see DATA_FORMAT.md) and the
 * text files of its folder, `models/stagebeam-tiny-prm/`: the policy's tokenizer with the marker
 * and the two verdict tokens added, the policy's chat template, and `verifier.json`.
 *
 *   npm run verifier:data [-- --images 16000 --pairs 1 --out models/.work/verifier-data]
 *
 * Each sequence is what the engine feeds the verifier for one candidate of a stage: the user turn
 * (image + the verifier prompt) rendered by the chat template, then the accepted stages as the
 * policy wrote them (tags included), then the candidate (its open tag included, as the policy
 * generates it) cut into steps with a marker after each. The labels at the markers come from the
 * scene generator (`verifier-labels.ts`). Training pairs are drawn with the policy judge's own
 * mistakes (`makeJudgePair`); the held-out pairs are exactly the policy's held-out judge pairs.
 */
import { createWriteStream } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { Tokenizer } from "@huggingface/tokenizers";
import { expandImageTokens, renderUserPrompt } from "../../shared/core/prompts/chat.ts";
import { renderTemplate } from "../../shared/core/prompts/templates.ts";
import { STAGES, type Stage } from "../../shared/core/protocol/stages.ts";
import { createRng, type Rng } from "../../shared/core/random.ts";
import { generateItem } from "../../shared/core/scenes/items.ts";
import { perturbScene } from "../../shared/core/scenes/perturb.ts";
import type { Scene } from "../../shared/core/scenes/scene.ts";
import { markSteps } from "../../shared/core/verifier/steps.ts";
import { VERIFIER_FILE, VERIFIER_FORMAT, VerifierTemplateSchema, stepRuleFor } from "../../shared/core/verifier/template.ts";
import {
  HELDOUT_KINDS,
  HELDOUT_SEED,
  IMAGE_SEQ_LENGTH,
  MODEL_DIR,
  TRAIN_SEED,
  cellLabels,
  extraRng,
  judgeExample,
  metaOf,
  rawPixels,
} from "./build-data.ts";
import { TOKENIZER_CONFIG } from "./text-files.ts";
import { captionMistake, stepLabels } from "./verifier-labels.ts";

const VERIFIER_DIR = path.resolve(import.meta.dirname, "../stagebeam-tiny-prm");

const VERIFIER_TEMPLATE = VerifierTemplateSchema.parse({
  format: VERIFIER_FORMAT,
  prompt: "{{ question }}",
  // A caption is checked object by object, so a wrong object is its own step; a conclusion is one word.
  steps: { default: "sentences", stages: { CAPTION: "caption-objects", CONCLUSION: "whole" } },
  marker: "<step>",
  good: "<+>",
  bad: "<->",
  pool: "min",
});

/** How often each stage's pairs are drawn for training; CAPTION and REASONING matter most. */
const TRAIN_STAGES: [Stage, number][] = [
  ["CAPTION", 0.45],
  ["REASONING", 0.3],
  ["CONCLUSION", 0.15],
  ["SUMMARY", 0.1],
];
/**
 * REASONING and CONCLUSION are checked against the accepted stages, not the image: this share of
 * their training pairs follows the stages of a misread scene, whose reasoning is then the right one.
 */
const MISREAD_CONTEXT = 0.3;

interface VerifierLine {
  image: number;
  ids: number[];
  /** Where the assistant text (accepted stages, then the candidate) begins. */
  target_start: number;
  /** Where the candidate begins. */
  cand_start: number;
  stage: Stage;
  /** Positions of the markers in `ids`, one per step, and whether each step is good. */
  markers: number[];
  labels: number[];
  role: "good" | "bad";
  /** The accepted stages are the scene's own ("gold") or a misread scene's ("misread"). */
  context: "gold" | "misread";
  /** Held out: the image index of the policy's held-out set the pair belongs to. */
  pair?: number;
  mistake?: string;
}

function weightedStage(rng: Rng): Stage {
  let r = rng.next();
  for (const [stage, weight] of TRAIN_STAGES) {
    r -= weight;
    if (r < 0) return stage;
  }
  return "CAPTION";
}

/** The policy's tokenizer with the marker and the verdict tokens appended as special tokens. */
async function verifierTokenizerJson(): Promise<{ json: Record<string, unknown>; added: Record<string, number> }> {
  const policy = JSON.parse(await readFile(path.join(MODEL_DIR, "tokenizer.json"), "utf8"));
  const vocab: Record<string, number> = policy.model.vocab;
  const added: Record<string, number> = {};
  for (const content of [VERIFIER_TEMPLATE.marker, VERIFIER_TEMPLATE.good, VERIFIER_TEMPLATE.bad]) {
    if (content in vocab) throw new Error(`${content} is already in the policy's vocabulary`);
    const id = Object.keys(vocab).length;
    vocab[content] = id;
    added[content] = id;
    policy.added_tokens.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  }
  return { json: policy, added };
}

interface Example {
  image: number;
  question: string;
  stage: Stage;
  hint: string;
  good: string;
  bad: string;
  context: VerifierLine["context"];
  scene: Scene;
  pair?: number;
}

function trainExamples(rng: Rng, image: number, scene: Scene, pairs: number): Example[] {
  const out: Example[] = [];
  for (let n = 0; n < pairs; n++) {
    const stage = weightedStage(rng);
    const misread = (stage === "REASONING" || stage === "CONCLUSION") && rng.chance(MISREAD_CONTEXT);
    const context = misread ? perturbScene(rng, scene) : scene;
    const example = judgeExample(rng, context, stage);
    if (example === null) continue;
    const { hint, good, bad } = example.pair;
    out.push({ image, question: example.item.question, stage, hint, good, bad, context: misread ? "misread" : "gold", scene });
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      images: { type: "string", default: "16000" },
      pairs: { type: "string", default: "1" },
      heldout: { type: "string", default: "4000" },
      out: { type: "string", default: path.resolve(import.meta.dirname, "../.work/verifier-data") },
    },
  });
  const out = values.out;
  await mkdir(out, { recursive: true });
  await mkdir(VERIFIER_DIR, { recursive: true });

  const { json: tokenizerJson, added } = await verifierTokenizerJson();
  await writeFile(path.join(VERIFIER_DIR, "tokenizer.json"), JSON.stringify(tokenizerJson, null, 1));
  await writeFile(path.join(VERIFIER_DIR, "tokenizer_config.json"), JSON.stringify(TOKENIZER_CONFIG, null, 2));
  await writeFile(path.join(VERIFIER_DIR, VERIFIER_FILE), `${JSON.stringify(VERIFIER_TEMPLATE, null, 2)}\n`);
  const tokenizer = new Tokenizer(tokenizerJson, TOKENIZER_CONFIG);
  const vocab = (tokenizerJson.model as { vocab: Record<string, number> }).vocab;
  const id = (token: string): number => {
    const value = vocab[token];
    if (value === undefined) throw new Error(`token '${token}' missing from the vocabulary`);
    return value;
  };
  const encode = (text: string): number[] => tokenizer.encode(text, { add_special_tokens: false }).ids;
  const imageTokenId = id("<image>");
  const markerId = added[VERIFIER_TEMPLATE.marker]!;
  const chatTokens = { bos_token: "<bos>", eos_token: "<eos>", image_token: "<image>" };
  let maxLen = 0;

  const lineOf = (ex: Example, role: "good" | "bad"): VerifierLine => {
    const candidate = role === "good" ? ex.good : ex.bad;
    const rule = stepRuleFor(VERIFIER_TEMPLATE, ex.stage);
    const { steps, good } = stepLabels(candidate, ex.good, rule);
    const userText = renderTemplate(VERIFIER_TEMPLATE.prompt, { question: ex.question });
    const promptIds = expandImageTokens(
      encode(renderUserPrompt(TOKENIZER_CONFIG.chat_template, chatTokens, userText)),
      imageTokenId,
      IMAGE_SEQ_LENGTH,
    );
    const hintIds = encode(ex.hint);
    const assistantIds = encode(ex.hint + markSteps(steps, VERIFIER_TEMPLATE.marker));
    if (hintIds.some((t, i) => assistantIds[i] !== t))
      throw new Error(`accepted text '${ex.hint}' tokenizes differently before a candidate`);
    const ids = [...promptIds, ...assistantIds];
    const markers = ids.flatMap((t, p) => (t === markerId ? [p] : []));
    if (markers.length !== steps.length)
      throw new Error(`candidate '${candidate}': ${markers.length} markers for ${steps.length} steps`);
    maxLen = Math.max(maxLen, ids.length);
    return {
      image: ex.image,
      ids,
      target_start: promptIds.length,
      cand_start: promptIds.length + hintIds.length,
      stage: ex.stage,
      markers,
      labels: good.map(Number),
      role,
      context: ex.context,
      ...(ex.pair !== undefined ? { pair: ex.pair } : {}),
      ...(ex.stage === "CAPTION" && role === "bad" ? { mistake: captionMistake(ex.bad, ex.good, ex.scene) } : {}),
    };
  };

  const writeSplit = async (name: string, examples: Example[], scenes: Scene[]) => {
    const pixels = createWriteStream(path.join(out, `${name}_images.u8`));
    for (const scene of scenes) {
      if (!pixels.write(await rawPixels(scene))) await new Promise<void>((resolve) => pixels.once("drain", () => resolve()));
    }
    await new Promise<void>((resolve, reject) => pixels.end((error?: Error | null) => (error ? reject(error) : resolve())));
    await writeFile(path.join(out, `${name}_cells.u8`), Buffer.concat(scenes.map(cellLabels)));
    const lines = examples.flatMap((ex) => [lineOf(ex, "good"), lineOf(ex, "bad")]);
    await writeFile(path.join(out, `${name}.jsonl`), `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`);
    const counts: Record<string, number> = {};
    for (const l of lines) counts[`${l.stage}/${l.role}`] = (counts[`${l.stage}/${l.role}`] ?? 0) + 1;
    console.log(`${name}: ${scenes.length} images, ${lines.length} sequences ${JSON.stringify(counts)}`);
  };

  const trainScenes: Scene[] = [];
  const train: Example[] = [];
  for (let i = 0; i < Number(values.images); i++) {
    const { scene } = generateItem(TRAIN_SEED, i);
    trainScenes.push(scene);
    train.push(...trainExamples(createRng(`verifier-train:${TRAIN_SEED}:${i}`), i, scene, Number(values.pairs)));
  }
  await writeSplit("train", train, trainScenes);

  // The policy judge's held-out pairs (build-data.ts draws them the same way), scored pointwise here.
  const heldScenes: Scene[] = [];
  const held: Example[] = [];
  for (let i = 0; i < Number(values.heldout); i++) {
    const kind = HELDOUT_KINDS[i % HELDOUT_KINDS.length]!;
    if (!(STAGES as readonly string[]).includes(kind)) continue;
    const { scene } = generateItem(HELDOUT_SEED, i);
    const example = judgeExample(extraRng("heldout", HELDOUT_SEED, i), scene, kind as Stage);
    if (example === null) continue;
    const { hint, good, bad } = example.pair;
    held.push({
      image: heldScenes.length,
      question: example.item.question,
      stage: kind as Stage,
      hint,
      good,
      bad,
      context: "gold",
      scene,
      pair: i,
    });
    heldScenes.push(scene);
  }
  await writeSplit("heldout", held, heldScenes);

  const vocabList: string[] = [];
  for (const [token, index] of Object.entries(vocab)) vocabList[index] = token;
  await writeFile(
    path.join(out, "meta.json"),
    JSON.stringify(
      {
        ...metaOf(vocabList, id),
        marker_id: markerId,
        good_id: added[VERIFIER_TEMPLATE.good],
        bad_id: added[VERIFIER_TEMPLATE.bad],
        verifier: VERIFIER_TEMPLATE,
        vocab: vocabList,
        max_seq_len: maxLen,
      },
      null,
      1,
    ),
  );
  await writeFile(path.join(out, "READY"), `${new Date().toISOString()}\n`);
  console.log(`vocab ${vocabList.length}; longest ${maxLen} tokens -> ${out}`);
}

await main();
