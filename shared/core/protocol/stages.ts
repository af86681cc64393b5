/**
 * The four-stage text protocol: stage names, their tags, and parsing of a structured answer.
 * Every process (data builder, engine, search, eval) agrees on these, so they live in one place.
 */

export const STAGES = ["SUMMARY", "CAPTION", "REASONING", "CONCLUSION"] as const;
export type Stage = (typeof STAGES)[number];

export function isStage(value: unknown): value is Stage {
  return typeof value === "string" && (STAGES as readonly string[]).includes(value);
}

export function openTag(stage: Stage): string {
  return `<${stage}>`;
}

export function closeTag(stage: Stage): string {
  return `</${stage}>`;
}

export interface StructuredParse {
  /** Content (untrimmed) of each stage that was opened and then closed; the first such block wins. */
  stages: Partial<Record<Stage, string>>;
  /** All four stages present in order, each opened and closed exactly once, only whitespace around them. */
  wellFormed: boolean;
  /** Trimmed CONCLUSION content, or null when no closed CONCLUSION block exists. */
  answer: string | null;
}

const TAG_RE = /<(\/?)(SUMMARY|CAPTION|REASONING|CONCLUSION)>/g;

/**
 * Lenient on extraction (a broken answer still yields whatever stages it closed, so a trace or
 * an eval can show them) and strict on `wellFormed`.
 */
export function parseStructured(text: string): StructuredParse {
  const stages: Partial<Record<Stage, string>> = {};
  let wellFormed = true;
  let open: Stage | null = null;
  let contentStart = 0;
  let outsideStart = 0;
  let expected = 0; // index into STAGES of the next stage a well-formed answer must open

  for (const m of text.matchAll(TAG_RE)) {
    const isClose = m[1] === "/";
    const stage = m[2] as Stage;
    const at = m.index;
    if (!isClose) {
      if (open !== null) wellFormed = false; // nested or unclosed block
      if (text.slice(outsideStart, at).trim() !== "" && open === null) wellFormed = false;
      if (STAGES[expected] !== stage) wellFormed = false;
      open = stage;
      contentStart = at + m[0].length;
    } else if (open === stage) {
      if (stages[stage] === undefined) stages[stage] = text.slice(contentStart, at);
      open = null;
      outsideStart = at + m[0].length;
      expected += 1;
    } else {
      wellFormed = false; // stray or mismatched close tag
      if (open === null) outsideStart = at + m[0].length;
    }
  }
  if (open !== null || expected !== STAGES.length) wellFormed = false;
  if (text.slice(outsideStart).trim() !== "") wellFormed = false;

  const conclusion = stages.CONCLUSION;
  return { stages, wellFormed, answer: conclusion === undefined ? null : conclusion.trim() };
}

export type StageTexts = Record<Stage, string>;

/** Joins stage contents into the tagged response text the model is trained to produce. */
export function formatStructured(stages: StageTexts): string {
  return STAGES.map((stage) => `${openTag(stage)}${stages[stage]}${closeTag(stage)}`).join("");
}

/**
 * The content of `text` when it is exactly one `<stage>…</stage>` block (whitespace around it
 * allowed, no other stage tag inside), else null. A stage-level candidate must be one.
 */
export function parseStageBlock(text: string, stage: Stage): string | null {
  const t = text.trim();
  const open = openTag(stage);
  const close = closeTag(stage);
  if (t.length < open.length + close.length || !t.startsWith(open) || !t.endsWith(close)) return null;
  const inner = t.slice(open.length, t.length - close.length);
  return new RegExp(TAG_RE.source).test(inner) ? null : inner;
}
