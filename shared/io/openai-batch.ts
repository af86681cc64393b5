/**
 * The OpenAI batch input format, one request per line:
 *
 *   {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions",
 *    "body": {"model": "…", "messages": [{"role": "user", "content": [
 *      {"type": "text", "text": "How many red objects?"},
 *      {"type": "image_url", "image_url": {"url": "s3://bucket/a.png"}}]}],
 *     "seed": 7, "max_tokens": 256, "stagebeam": {"strategy": "stage", "beam": 4, "judge": "score"}}}
 *
 * One user message: its text parts are the question, its one image_url part the image
 * (s3://, data: or a local path / file:// URL inside the image root). The body fields that
 * stagebeam has settings for are read per line (seed, max_tokens → maxStageTokens,
 * stagebeam.strategy/beam/judge); the run checks them against its own settings.
 * `temperature` and `top_p` are the model's (its generation_config), so a line that sets
 * them is refused rather than silently run otherwise.
 */
import type { SearchSettings } from "../core/search/settings.ts";

/** Settings a line asks for; the run must have the same. */
export type LineSettings = Partial<Pick<SearchSettings, "seed" | "maxStageTokens" | "strategy" | "beam" | "judgeMode">>;

export type OpenAILine =
  | { ok: true; id: string; image: unknown; question: string; settings: LineSettings }
  | { ok: false; id?: string; field: string; got: unknown; expected: string };

export const isOpenAIBatchLine = (v: Record<string, unknown>): boolean => "custom_id" in v;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const positiveInt = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 1;

export function parseOpenAIBatchLine(v: Record<string, unknown>): OpenAILine {
  const id = typeof v.custom_id === "string" && v.custom_id.trim() !== "" ? v.custom_id.trim() : undefined;
  const fail = (field: string, got: unknown, expected: string): OpenAILine => ({
    ok: false,
    ...(id !== undefined ? { id } : {}),
    field,
    got,
    expected,
  });
  if (id === undefined) return fail("custom_id", v.custom_id, "a non-empty string");
  if (v.method !== "POST") return fail("method", v.method, '"POST"');
  if (v.url !== "/v1/chat/completions") return fail("url", v.url, '"/v1/chat/completions"');
  const body = v.body;
  if (!isObject(body)) return fail("body", body, "an object with model and messages");
  if (typeof body.model !== "string")
    return fail("body.model", body.model, "a string (recorded, not used: the fleet's model answers)");
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length !== 1)
    return fail("body.messages", messages, "an array of exactly one user message");
  const message = messages[0];
  if (!isObject(message) || message.role !== "user")
    return fail("body.messages[0].role", isObject(message) ? message.role : message, '"user"');
  const content = message.content;
  if (!Array.isArray(content)) return fail("body.messages[0].content", content, "an array of text and image_url parts");
  const texts: string[] = [];
  let image: unknown;
  let images = 0;
  for (const [i, part] of content.entries()) {
    const at = `body.messages[0].content[${i}]`;
    if (isObject(part) && part.type === "text") {
      if (typeof part.text !== "string") return fail(`${at}.text`, part.text, "a string");
      texts.push(part.text);
    } else if (isObject(part) && part.type === "image_url") {
      if (!isObject(part.image_url)) return fail(`${at}.image_url`, part.image_url, "an object with url");
      image = part.image_url.url;
      images++;
    } else {
      return fail(`${at}.type`, isObject(part) ? part.type : part, '"text" or "image_url"');
    }
  }
  if (images !== 1) return fail("body.messages[0].content", `${images} image_url parts`, "exactly one image_url part");
  for (const field of ["temperature", "top_p"] as const) {
    if (body[field] !== undefined && body[field] !== null)
      return fail(`body.${field}`, body[field], "no value: stagebeam samples with the model's own temperature and top_p");
  }
  const settings: LineSettings = {};
  if (body.seed !== undefined) {
    if (typeof body.seed !== "number" || !Number.isSafeInteger(body.seed) || body.seed < 0)
      return fail("body.seed", body.seed, "a non-negative integer");
    settings.seed = body.seed;
  }
  const maxTokens = body.max_tokens ?? body.max_completion_tokens;
  if (maxTokens !== undefined) {
    if (!positiveInt(maxTokens)) return fail("body.max_tokens", maxTokens, "an integer >= 1 (the token cap of a stage)");
    settings.maxStageTokens = maxTokens as number;
  }
  const ext = body.stagebeam;
  if (ext !== undefined) {
    if (!isObject(ext)) return fail("body.stagebeam", ext, "an object with strategy, beam, judge");
    const unknown = Object.keys(ext).filter((k) => !["strategy", "beam", "judge"].includes(k));
    if (unknown.length > 0)
      return fail(`body.stagebeam.${unknown[0]}`, ext[unknown[0]!], "no such field (strategy, beam, judge)");
    if (ext.strategy !== undefined) {
      if (typeof ext.strategy !== "string") return fail("body.stagebeam.strategy", ext.strategy, "a strategy name");
      settings.strategy = ext.strategy as LineSettings["strategy"];
    }
    if (ext.beam !== undefined) {
      if (!positiveInt(ext.beam)) return fail("body.stagebeam.beam", ext.beam, "an integer >= 1");
      settings.beam = ext.beam as number;
    }
    if (ext.judge !== undefined) {
      if (typeof ext.judge !== "string") return fail("body.stagebeam.judge", ext.judge, "a judge mode");
      settings.judgeMode = ext.judge as LineSettings["judgeMode"];
    }
  }
  return { ok: true, id, image, question: texts.join("\n"), settings };
}

/** The name a line's setting has in the OpenAI body, for messages. */
export const OPENAI_SETTING_FIELDS: Record<keyof LineSettings, string> = {
  seed: "body.seed",
  maxStageTokens: "body.max_tokens",
  strategy: "body.stagebeam.strategy",
  beam: "body.stagebeam.beam",
  judgeMode: "body.stagebeam.judge",
};
