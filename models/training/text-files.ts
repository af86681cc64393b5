/**
 * The text side of the bundled model folder: tokenizer, chat template and judge templates.
 * Written by the data builder, because the vocabulary is the set of words the data uses.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { STAGES, closeTag, openTag } from "../../shared/core/protocol/stages.ts";
import type { JudgeTemplates } from "../../shared/core/prompts/templates.ts";

export const SPECIAL_TOKENS = [
  "<unk>",
  "<pad>",
  "<bos>",
  "<eos>",
  "<|user|>",
  "<|assistant|>",
  "<image>",
  ...STAGES.flatMap((s) => [openTag(s), closeTag(s)]),
] as const;

export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}<|{{ message.role }}|>" +
  "{% for part in message.content %}{% if part.type == 'image' %}{{ image_token }}{% else %} {{ part.text }}{% endif %}{% endfor %}" +
  "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

export const TOKENIZER_CONFIG = {
  tokenizer_class: "PreTrainedTokenizerFast",
  bos_token: "<bos>",
  eos_token: "<eos>",
  pad_token: "<pad>",
  unk_token: "<unk>",
  image_token: "<image>",
  model_max_length: 512,
  chat_template: CHAT_TEMPLATE,
};

const compare = (instruction: string, withHint: boolean) =>
  `Question: {{ question }} ${instruction}${withHint ? "{% if hint %} {{ hint }}{% endif %}" : ""} Response 1: {{ first }} Response 2: {{ second }}`;

export const JUDGE_TEMPLATES: JudgeTemplates = {
  compare: {
    SUMMARY: compare("Which summary plans the answer better?", false),
    CAPTION: compare("Which caption describes the image correctly?", true),
    REASONING: compare("Which reasoning is correct?", true),
    CONCLUSION: compare("Which conclusion follows from the reasoning?", true),
    all: compare("Which answer is better?", false),
    sentence: compare("Which next sentence is better?", true),
  },
  reasoning_check:
    "Question: {{ question }} Is this reasoning correct?{% if hint %} {{ hint }}{% endif %} Reasoning: {{ candidate }}",
  verdict_prefix: "I choose response",
  choices: { "1": " 1", "2": " 2" },
  check_answers: { correct: "correct", incorrect: "incorrect" },
};

const PRE_TOKENIZER = {
  type: "Sequence",
  pretokenizers: [
    { type: "Metaspace", replacement: "▁", prepend_scheme: "never", split: true },
    { type: "Split", pattern: { Regex: "[^\\w▁]|▁?\\w+" }, behavior: "Isolated", invert: false },
  ],
};
const DECODER = { type: "Metaspace", replacement: "▁", prepend_scheme: "never", split: true };

function tokenizerJson(vocab: Record<string, number>) {
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: PRE_TOKENIZER,
    post_processor: null,
    decoder: DECODER,
    model: { type: "WordLevel", vocab, unk_token: "<unk>" },
  };
}

/** Builds the word-level tokenizer.json whose vocabulary is every piece that `texts` splits into. */
export function buildTokenizerJson(texts: Iterable<string>): ReturnType<typeof tokenizerJson> {
  const specials = Object.fromEntries(SPECIAL_TOKENS.map((t, i) => [t, i]));
  const splitter = new Tokenizer(tokenizerJson(specials), TOKENIZER_CONFIG);
  const pieces = new Set<string>();
  for (const text of texts) for (const piece of splitter.tokenize(text)) pieces.add(piece);
  // Digits and the judge's answer words must exist even if a small corpus misses one.
  for (let d = 0; d <= 9; d++) for (const p of [`${d}`, `▁${d}`]) pieces.add(p);
  const vocab: Record<string, number> = { ...specials };
  for (const piece of [...pieces].filter((p) => !(p in specials)).sort()) vocab[piece] = Object.keys(vocab).length;
  return tokenizerJson(vocab);
}
