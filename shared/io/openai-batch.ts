/**
 * The OpenAI batch input format, one request per line, read as people write it:
 *
 *   {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions",
 *    "body": {"model": "…", "messages": [
 *      {"role": "system", "content": "Answer briefly."},
 *      {"role": "user", "content": [
 *        {"type": "text", "text": "How many red objects?"},
 *        {"type": "image_url", "image_url": {"url": "s3://bucket/a.png"}}]}],
 *     "temperature": 0.7, "top_p": 0.9, "seed": 7, "max_tokens": 256,
 *     "stagebeam": {"strategy": "stage", "beam": 4, "judge": "score"}}}
 *
 * System (or developer) messages, then one user message: its text parts are the question, its
 * one image_url part the image (s3://, data: or a local path / file:// URL inside the image
 * root). Per line, `seed`, `temperature`, `top_p` and `max_tokens` (or `max_completion_tokens`)
 * are the item's own (ItemSettings: they shape how its candidates are drawn, and `max_tokens`
 * caps each stage of the answer); `stagebeam.strategy/beam/judge` shape the run's search and
 * must be the run's. Other chat-completion fields (`n`, `stop`, `logprobs`, …) and fields
 * stagebeam does not know are accepted and named in `ignored`, for the reader to warn about
 * once a run rather than fail a line for.
 */
import { ItemSettingsSchema, type ItemSettings } from "../core/search/params.ts";
import type { SearchSettings } from "../core/search/settings.ts";

/** Settings of the run's search that a line may name; each must be the run's. */
export type RunSettingsAsked = Partial<Pick<SearchSettings, "strategy" | "beam" | "judgeMode">>;

export type OpenAILine =
  | {
      ok: true;
      id: string;
      image: unknown;
      question: string;
      /** The system messages' text, joined by blank lines; undefined without one. */
      system?: string;
      /** The item's own sampling settings. */
      settings: ItemSettings;
      /** The run settings the line names. */
      asks: RunSettingsAsked;
      /** Body fields read but not honoured, as `body.<field>`. */
      ignored: string[];
      /** Where the image reference is, for messages about it. */
      imageField: string;
    }
  | { ok: false; id?: string; field: string; got: unknown; expected: string };

export const isOpenAIBatchLine = (v: Record<string, unknown>): boolean => "custom_id" in v;

/** Chat-completion fields stagebeam reads but does not honour: an answer is one choice, as text, by its search. */
export const IGNORED_OPENAI_FIELDS: Readonly<Record<string, string>> = {
  n: "one answer per request (the search's)",
  stop: "an answer ends after its CONCLUSION stage",
  logprobs: "no token log-probabilities in the output (the trace has the candidates')",
  top_logprobs: "no token log-probabilities in the output",
  response_format: "the answer is the four-stage text",
  frequency_penalty: "no penalties in sampling",
  presence_penalty: "no penalties in sampling",
  logit_bias: "no logit bias in sampling",
  user: "recorded nowhere",
  stream: "a batch is not streamed",
  stream_options: "a batch is not streamed",
  tools: "no tool calls",
  tool_choice: "no tool calls",
  parallel_tool_calls: "no tool calls",
  functions: "no tool calls",
  function_call: "no tool calls",
  metadata: "recorded nowhere",
  store: "recorded nowhere",
  service_tier: "the fleet has one tier",
  modalities: "text out only",
  audio: "text out only",
  prediction: "no predicted outputs",
  reasoning_effort: "the search decides the effort (stagebeam.strategy, stagebeam.beam)",
  verbosity: "the answer is the four-stage text",
  web_search_options: "nothing is fetched from the web",
};

/** What each field stagebeam honours does (the README's table is written from the same list). */
export const HONOURED_OPENAI_FIELDS: Readonly<Record<string, string>> = {
  model: "recorded, not used: the fleet's model answers",
  messages:
    "system/developer messages go to the chat template before the user turn; one user message with text parts (the question) and one image_url part",
  temperature: "the item's sampling temperature, 0 to 2 (0: the most likely token); absent: the model's generation_config",
  top_p: "the item's nucleus mass, in (0, 1]; absent: the model's",
  seed: "the item's seed: its candidates' random streams; absent: the run's (--seed)",
  max_tokens: "the token cap of each stage of the item's answer (an answer has four); absent: the run's (--max-stage-tokens)",
  max_completion_tokens: "the same as max_tokens (when both are given they must agree)",
  stagebeam: "strategy, beam, judge: the run's search, which must match the run's settings",
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const positiveInt = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 1;
const given = (v: unknown) => v !== undefined && v !== null;

/** The text of a system message's content: a string or text parts. */
function systemText(content: unknown): string | null {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return null;
  const texts = content.map((p) => (isObject(p) && p.type === "text" && typeof p.text === "string" ? p.text : null));
  return texts.includes(null) ? null : texts.join("\n");
}

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
  const shape = "system messages, then exactly one user message";
  if (!Array.isArray(messages) || messages.length === 0) return fail("body.messages", messages, `an array of ${shape}`);
  const systems: string[] = [];
  for (const [i, m] of messages.slice(0, -1).entries()) {
    const role = isObject(m) ? m.role : m;
    if (role !== "system" && role !== "developer")
      return fail(`body.messages[${i}].role`, role, `"system" or "developer" (${shape})`);
    const text = systemText((m as Record<string, unknown>).content);
    if (text === null)
      return fail(`body.messages[${i}].content`, (m as Record<string, unknown>).content, "a string or text parts");
    systems.push(text);
  }
  const u = messages.length - 1;
  const message = messages[u];
  if (!isObject(message) || message.role !== "user")
    return fail(`body.messages[${u}].role`, isObject(message) ? message.role : message, `"user" (${shape})`);
  const content = message.content;
  if (!Array.isArray(content)) return fail(`body.messages[${u}].content`, content, "an array of text and image_url parts");
  const texts: string[] = [];
  let image: unknown;
  let images = 0;
  for (const [i, part] of content.entries()) {
    const at = `body.messages[${u}].content[${i}]`;
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
  if (images !== 1) return fail(`body.messages[${u}].content`, `${images} image_url parts`, "exactly one image_url part");

  const own: Record<string, unknown> = {};
  if (given(body.seed)) own.seed = body.seed;
  if (given(body.temperature)) own.temperature = body.temperature;
  if (given(body.top_p)) own.topP = body.top_p;
  const maxTokens = given(body.max_completion_tokens) ? body.max_completion_tokens : body.max_tokens;
  if (given(body.max_tokens) && given(body.max_completion_tokens) && body.max_tokens !== body.max_completion_tokens)
    return fail(
      "body.max_tokens",
      body.max_tokens,
      `the same as body.max_completion_tokens (${String(body.max_completion_tokens)})`,
    );
  if (given(maxTokens)) own.maxStageTokens = maxTokens;
  const parsed = ItemSettingsSchema.safeParse(own);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0]);
    const field =
      {
        seed: "seed",
        temperature: "temperature",
        topP: "top_p",
        maxStageTokens: given(body.max_completion_tokens) ? "max_completion_tokens" : "max_tokens",
      }[key] ?? key;
    const what =
      {
        seed: "a non-negative integer",
        temperature: "a number from 0 to 2",
        topP: "a number in (0, 1]",
        maxStageTokens: "an integer >= 1 (the token cap of each stage)",
      }[key] ?? issue.message;
    return fail(`body.${field}`, own[key], what);
  }

  const asks: RunSettingsAsked = {};
  const ext = body.stagebeam;
  if (ext !== undefined) {
    if (!isObject(ext)) return fail("body.stagebeam", ext, "an object with strategy, beam, judge");
    const unknown = Object.keys(ext).filter((k) => !["strategy", "beam", "judge"].includes(k));
    if (unknown.length > 0)
      return fail(`body.stagebeam.${unknown[0]}`, ext[unknown[0]!], "no such field (strategy, beam, judge)");
    if (ext.strategy !== undefined) {
      if (typeof ext.strategy !== "string") return fail("body.stagebeam.strategy", ext.strategy, "a strategy name");
      asks.strategy = ext.strategy as RunSettingsAsked["strategy"];
    }
    if (ext.beam !== undefined) {
      if (!positiveInt(ext.beam)) return fail("body.stagebeam.beam", ext.beam, "an integer >= 1");
      asks.beam = ext.beam as number;
    }
    if (ext.judge !== undefined) {
      if (typeof ext.judge !== "string") return fail("body.stagebeam.judge", ext.judge, "a judge mode");
      asks.judgeMode = ext.judge as RunSettingsAsked["judgeMode"];
    }
  }
  const ignored = Object.keys(body)
    .filter((k) => !(k in HONOURED_OPENAI_FIELDS) && given(body[k]))
    .map((k) => `body.${k}`);
  return {
    ok: true,
    id,
    image,
    question: texts.join("\n"),
    ...(systems.length > 0 ? { system: systems.join("\n\n") } : {}),
    settings: parsed.data,
    asks,
    ignored,
    imageField: `body.messages[${u}].content.image_url.url`,
  };
}

/** Why a body field a line gave is not honoured, for the one warning a run gives about it. */
export function ignoredFieldNote(field: string): string {
  const name = field.replace(/^body\./, "");
  const why = IGNORED_OPENAI_FIELDS[name];
  return why !== undefined
    ? `${field} is accepted and ignored: ${why}`
    : `${field} is not a chat-completion field stagebeam knows; ignored`;
}

/** The name a run setting a line names has in the OpenAI body, for messages. */
export const OPENAI_SETTING_FIELDS: Record<keyof RunSettingsAsked, string> = {
  strategy: "body.stagebeam.strategy",
  beam: "body.stagebeam.beam",
  judgeMode: "body.stagebeam.judge",
};
