/**
 * A deterministic stand-in for the model host, for unit tests and the fleet's protocol tests
 * (never for the integration tests of answers: those use the real bundled model).
 *
 * Every text and verdict is a function of the request alone (its sampleKey or id), so any
 * batching, worker or retry gives the same search result, as the real engine must.
 *
 *   stage stop   `<STAGE>…</STAGE>` with words picked by the sample key
 *   end stop     a whole four-stage answer
 *   sentence     the next sentence of a fixed script
 *   compare      verdict 1 or 2 from a hash of the request id
 *   check        `incorrect` for about a quarter of the ids
 *
 * Failure injection through the question text: `[bad-input]` makes open() throw BadInputError;
 * `[flaky]` makes the first generate call of each request id (in this process) throw a
 * transient error. Images must start with the PNG signature, else open() throws
 * BadInputError("image-unreadable").
 */
import { createHash } from "node:crypto";
import { STAGES, type Stage } from "../../shared/core/protocol/stages.ts";
import { splitSentences } from "../../shared/core/protocol/sentences.ts";
import type { GenerateRequest, GenerateResult, JudgeRequest, JudgeResult } from "../../shared/core/search/types.ts";
import { BadInputError, type ItemInput, type ModelHost, type OpenItem } from "../../workers/fleet/protocol/index.ts";

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const ANSWERS = ["A", "B", "C", "D", "0", "1", "2", "3", "4", "yes", "no"];
const WORDS = ["red", "green", "blue", "small", "large", "circle", "square", "triangle"];

export function h(s: string): number {
  return createHash("sha256").update(s).digest().readUInt32BE(0);
}

const words = (key: string, n: number) => Array.from({ length: n }, (_, i) => WORDS[h(`${key}#${i}`) % WORDS.length]).join(" ");

function stageText(stage: Stage, key: string): string {
  switch (stage) {
    case "SUMMARY":
      return `I will find the ${words(key, 2)} objects and answer`;
    case "CAPTION":
      return `The image shows ${words(key, 3)} objects`;
    case "REASONING":
      return `Counting gives ${h(key) % 5} so the answer follows`;
    case "CONCLUSION":
      return ANSWERS[h(key) % ANSWERS.length]!;
  }
}

export function wholeAnswer(key: string): string {
  return STAGES.map((s) => `<${s}>${stageText(s, `${key}/${s}`)}</${s}>`).join("");
}

const SENTENCE_SCRIPT = (key: string) => [
  `<SUMMARY>I will look at the ${words(key, 1)} objects.`,
  ` Then I answer.</SUMMARY>`,
  `<CAPTION>The image shows ${words(key, 2)} shapes.</CAPTION>`,
  `<REASONING>I count ${h(key) % 5} of them.`,
  ` So the answer is clear.</REASONING>`,
  `<CONCLUSION>${ANSWERS[h(key) % ANSWERS.length]}</CONCLUSION>`,
];

const tokens = (text: string) => text.split(/\s+|(?=<)|(?<=>)/).filter((t) => t !== "").length;

export interface ScriptedHostOptions {
  modelId?: string;
  digest?: string;
  /** Milliseconds every generate/judge call takes. */
  delayMs?: number;
}

export interface ScriptedHostStats {
  opens: number;
  closes: number;
  generateCalls: number;
  judgeCalls: number;
  batchSizes: number[];
  opened: string[];
}

export interface ScriptedHost extends ModelHost {
  stats: ScriptedHostStats;
}

export function generateOne(req: GenerateRequest): GenerateResult {
  const key = req.sampleKey;
  let text: string;
  switch (req.stop.kind) {
    case "stage":
      text = `<${req.stop.stage}>${stageText(req.stop.stage, key)}</${req.stop.stage}>`;
      break;
    case "end":
      text = wholeAnswer(key);
      break;
    case "sentence": {
      const done = req.prefix === "" ? 0 : splitSentences(req.prefix).length;
      text = SENTENCE_SCRIPT(key)[done] ?? "";
      break;
    }
  }
  return { id: req.id, text, tokens: tokens(text), truncated: false, finished: req.stop.kind === "end" };
}

export function judgeOne(req: JudgeRequest): JudgeResult {
  if (req.kind === "check") return { id: req.id, verdict: h(req.id) % 4 === 0 ? "incorrect" : "correct" };
  return { id: req.id, verdict: h(req.id) % 2 === 0 ? 1 : 2, detail: { scripted: true } };
}

export function createScriptedHost(opts: ScriptedHostOptions = {}): ScriptedHost {
  const stats: ScriptedHostStats = { opens: 0, closes: 0, generateCalls: 0, judgeCalls: 0, batchSizes: [], opened: [] };
  const flakySeen = new Set<string>();
  const delay = () => (opts.delayMs ? new Promise((r) => setTimeout(r, opts.delayMs)) : Promise.resolve());
  return {
    modelId: opts.modelId ?? "scripted-test-host",
    digest: opts.digest ?? `sha256:${"0".repeat(64)}`,
    stats,
    async open(item: ItemInput): Promise<OpenItem> {
      if (!Buffer.isBuffer(item.image) || !item.image.subarray(0, 8).equals(PNG_SIGNATURE)) {
        throw new BadInputError("image-unreadable", `item ${JSON.stringify(item.id)}: image: not a PNG file`);
      }
      if (item.question.includes("[bad-input]")) {
        throw new BadInputError("bad-input", `item ${JSON.stringify(item.id)}: question: the scripted host refuses it`);
      }
      stats.opens++;
      stats.opened.push(item.id);
      const flaky = item.question.includes("[flaky]");
      return {
        async generate(requests) {
          stats.generateCalls++;
          stats.batchSizes.push(requests.length);
          await delay();
          if (flaky) {
            const fresh = requests.filter((r) => !flakySeen.has(r.id));
            if (fresh.length > 0) {
              for (const r of fresh) flakySeen.add(r.id);
              throw new Error(`scripted transient failure for ${fresh.map((r) => r.id).join(", ")}`);
            }
          }
          return requests.map(generateOne).reverse(); // order must not matter
        },
        async judge(requests) {
          stats.judgeCalls++;
          await delay();
          return requests.map(judgeOne);
        },
        close() {
          stats.closes++;
        },
      };
    },
  };
}
