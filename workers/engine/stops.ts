/**
 * Stop conditions. Each rule is a rule on text (`textStop`):
 * * stage — the first occurrence of the stage's end tag; the text ends just after it;
 * * sentence — the first sentence end where shared/core/protocol/sentences.ts puts one: after any
 *   stage end tag, or after `.`, `?`, `!` when the next text starts with whitespace or an opening
 *   tag. A final `<` does not settle it yet (`.</SUMMARY>` is one sentence);
 * * end — only end of sequence.
 * End of sequence (a token id) stops every rule and is not part of the text.
 *
 * A token whose text lies wholly past the stop point is a lookahead: it is dropped. A token
 * whose text holds the stop point (`>\n` finishing `</SUMMARY`, `.\n`) is kept and the text is
 * cut at the stop point (`overshoot` characters come off its end). The KV is unaffected: the
 * text, not the tokens, is what a later request continues (its prefix is re-encoded), so the
 * characters cut off are in no prefix. A sequence at maxTokens whose text could still end a
 * sentence with what comes next samples one lookahead to tell.
 *
 * The engine decides the rules per sampled token without decoding, in one of two ways:
 * * by table lookup on the token id, where the vocabulary makes that exact (`TableExactness`): the
 *   stage tags are special tokens that nothing else spells, and no token holds a sentence end
 *   inside it — the bundled tokenizer;
 * * on token surfaces otherwise (a Llama tokenizer spells `</SUMMARY>` in seven pieces): the
 *   surfaces of the new tokens are appended to a tail as long as the longest tag and the rule
 *   is tested on the tail, so a step costs the length of the new text, not of the sequence.
 *
 * The reference work pattern instead decodes the whole text after every token (`TextStopState`).
 */
import { sentenceEnd } from "../../shared/core/protocol/sentences.ts";
import { closeTag, STAGES, type Stage } from "../../shared/core/protocol/stages.ts";
import type { Stop } from "../../shared/core/search/types.ts";

/** The token is an end of sequence. */
export const F_EOS = 1;
/** The sequence stops after this token (it is kept). */
export const F_STOP = 2;
/** Sentence rule: the token's text ends with `.`, `?` or `!`. */
export const F_PUNCT = 4;
/** Sentence rule: the token's text starts with whitespace or an opening tag. */
export const F_OPENS = 8;

export type StopTable = Uint8Array;

export interface StopTokenizer {
  encode(text: string): number[];
  /** The token's text as it reads in the middle of a sequence (leading space kept). */
  surface(id: number): string;
}

const PUNCT_END = /[.?!]$/;
const OPENS = /^(\s|<(?!\/))/;
const CLOSE_TAGS = STAGES.map(closeTag);
/** Text a surface rule must still see before the new token: enough to finish the longest tag. */
const TAIL = Math.max(...CLOSE_TAGS.map((t) => t.length));

/** Whether the id tables give the stops of the text rules on this vocabulary, per kind of stop. */
export interface TableExactness {
  /** Every stage end tag is one token, and no other token text holds a tag or the start of one. */
  stage: boolean;
  /** `stage`, and no token text holds a sentence end before its last character. */
  sentence: boolean;
}

/** Whether `text` ends with the start of a stage end tag that a following token could finish. */
function endsInTagStart(text: string): boolean {
  const at = text.lastIndexOf("<");
  if (at < 0) return false;
  const rest = text.slice(at);
  return CLOSE_TAGS.some((tag) => rest.length < tag.length && tag.startsWith(rest));
}

export class StopTables {
  private readonly cache = new Map<string, StopTable>();
  /** The stage's end tag id when the tag is one token. */
  private readonly stageEnd = new Map<Stage, number>();
  private readonly surfaces: (string | undefined)[] = [];
  /** Read over the whole vocabulary at construction (at load), like the sentence table. */
  readonly exact: TableExactness;

  constructor(
    private readonly tokenizer: StopTokenizer,
    readonly vocab: number,
    readonly eosIds: readonly number[],
  ) {
    for (const stage of STAGES) {
      const ids = tokenizer.encode(closeTag(stage));
      if (ids.length === 1) this.stageEnd.set(stage, ids[0]!);
    }
    this.exact = this.readExactness();
  }

  /** The token's surface, decoded once. */
  surface(id: number): string {
    let text = this.surfaces[id];
    if (text === undefined) {
      text = this.tokenizer.surface(id);
      this.surfaces[id] = text;
    }
    return text;
  }

  private readExactness(): TableExactness {
    let stage = this.stageEnd.size === STAGES.length;
    let sentence = true;
    const tagIds = new Set(this.stageEnd.values());
    for (let id = 0; id < this.vocab && stage; id++) {
      const text = this.surface(id);
      if (tagIds.has(id)) continue;
      if (endsInTagStart(text) || CLOSE_TAGS.some((tag) => text.includes(tag))) stage = false;
      const end = sentenceEnd(text);
      if (end !== null && end < text.length) sentence = false;
    }
    return { stage, sentence: stage && sentence };
  }

  table(stop: Stop): StopTable {
    const key = stop.kind === "stage" ? `stage:${stop.stage}` : stop.kind;
    let table = this.cache.get(key);
    if (table !== undefined) return table;
    table = new Uint8Array(this.vocab);
    if (stop.kind === "stage") {
      const end = this.stageEnd.get(stop.stage);
      if (end !== undefined) table[end] = F_STOP;
    }
    if (stop.kind === "sentence") {
      for (let id = 0; id < this.vocab; id++) {
        const text = this.surface(id);
        if (text === "") continue;
        if (PUNCT_END.test(text)) table[id]! |= F_PUNCT;
        if (OPENS.test(text)) table[id]! |= F_OPENS;
      }
      for (const end of this.stageEnd.values()) table[end] = F_STOP;
    }
    for (const id of this.eosIds) if (id < this.vocab) table[id] = F_EOS;
    this.cache.set(key, table);
    return table;
  }

  /** A new sequence's stop state: by table where that is exact for the stop, else on surfaces. */
  state(stop: Stop, maxTokens: number): StopState {
    const table = this.table(stop);
    const byTable = stop.kind === "end" || this.exact[stop.kind];
    return byTable
      ? new StopState(table, maxTokens)
      : new StopState(table, maxTokens, { stop, surface: (id) => this.surface(id) });
  }
}

export type StepOutcome =
  /** Keep the token and go on. */
  | "continue"
  /** Keep the token; the stop rule is met. */
  | "stop"
  /** Drop the token (a lookahead past a sentence end); the stop rule is met. */
  | "stop-before"
  /** End of sequence (not kept). */
  | "eos"
  /** Keep the token; maxTokens is reached without the stop rule. */
  | "truncated"
  /** Drop the token (a lookahead at maxTokens that did not end the sentence); truncated. */
  | "truncated-before";

/** Whether the sampled token is part of the sequence's text. */
export function keepsToken(outcome: StepOutcome): boolean {
  return outcome === "continue" || outcome === "stop" || outcome === "truncated";
}

/** Why a sequence ended: its stop rule, end of sequence, maxTokens, or the model's context window. */
export type FinishReason = "stop" | "eos" | "max_tokens" | "context";

/**
 * The finish reason of a sequence its stop rule ended (the context window is checked apart).
 * A dropped lookahead keeps the reason of the rule that dropped it: past a sentence end it is a
 * stop, at maxTokens without a sentence end it is a truncation.
 */
export function finishReason(outcome: Exclude<StepOutcome, "continue">): Exclude<FinishReason, "context"> {
  switch (outcome) {
    case "stop":
    case "stop-before":
      return "stop";
    case "eos":
      return "eos";
    case "truncated":
    case "truncated-before":
      return "max_tokens";
  }
}

/**
 * The first point where the rule is met in `text`: the length of text the candidate keeps, or
 * null. (End of sequence is checked by token id.)
 */
export function textStop(stop: Stop, text: string): number | null {
  switch (stop.kind) {
    case "stage": {
      const tag = closeTag(stop.stage);
      const at = text.indexOf(tag);
      return at < 0 ? null : at + tag.length;
    }
    case "sentence": {
      const end = sentenceEnd(text);
      // The `<` after the punctuation may yet open `</SUMMARY>`, which the sentence keeps.
      return end === text.length - 1 && text.endsWith("<") ? null : end;
    }
    case "end":
      return null;
  }
}

/** Text after which the next token may still end a sentence (worth one lookahead at maxTokens). */
const SENTENCE_PENDING = /[.?!]<?$/;

/** How a stop state reads token text when the table alone cannot decide its rule. */
export interface SurfaceRule {
  stop: Stop;
  surface(id: number): string;
}

/** The decoded text of a sequence's kept tokens, cut at its stop point. */
export function keptText(text: string, state: { readonly overshoot: number }): string {
  return state.overshoot === 0 ? text : text.slice(0, text.length - state.overshoot);
}

/** A sequence's progress against its stop rule, advanced once per sampled token. */
export class StopState {
  /** Tokens kept so far. */
  kept = 0;
  /**
   * Characters at the end of the kept tokens' text past the stop point (`keptText` cuts them),
   * counted on token surfaces, which read as the decoded text does but for a character whose
   * bytes a byte-level vocabulary splits across tokens.
   */
  overshoot = 0;
  private punct = false;
  /** Surface rule only: the last characters of the kept text. */
  private tail = "";
  constructor(
    readonly table: StopTable,
    readonly maxTokens: number,
    private readonly surfaces: SurfaceRule | null = null,
  ) {}

  advance(token: number): StepOutcome {
    const f = this.table[token] ?? 0;
    if (f & F_EOS) return "eos";
    if (this.surfaces !== null) return this.advanceOnText(this.surfaces, token);
    if (this.punct && f & F_OPENS) return "stop-before";
    if (this.kept >= this.maxTokens) return "truncated-before";
    this.kept++;
    if (f & F_STOP) return "stop";
    this.punct = (f & F_PUNCT) !== 0;
    if (this.kept >= this.maxTokens && !this.punct) return "truncated";
    return "continue";
  }

  private advanceOnText(rule: SurfaceRule, token: number): StepOutcome {
    const before = this.tail.length;
    const text = this.tail + rule.surface(token);
    const end = textStop(rule.stop, text);
    if (end !== null && end <= before) {
      this.overshoot = before - end;
      return "stop-before";
    }
    if (this.kept >= this.maxTokens) return "truncated-before";
    this.kept++;
    if (end !== null) {
      this.overshoot = text.length - end;
      return "stop";
    }
    this.tail = text.slice(-TAIL);
    this.punct = rule.stop.kind === "sentence" && SENTENCE_PENDING.test(text);
    if (this.kept >= this.maxTokens && !this.punct) return "truncated";
    return "continue";
  }
}

/**
 * The reference's stop check: after every token the whole continuation is decoded and tested
 * (`textStop`). Same outcomes as StopState, at the cost of a full decode per token.
 */
export class TextStopState {
  readonly tokens: number[] = [];
  /** As StopState's. */
  overshoot = 0;
  /** Length of the text of the kept tokens. */
  private length = 0;
  constructor(
    readonly stop: Stop,
    readonly maxTokens: number,
    private readonly isEos: (token: number) => boolean,
    private readonly decode: (tokens: readonly number[]) => string,
  ) {}

  get kept(): number {
    return this.tokens.length;
  }

  advance(token: number): StepOutcome {
    if (this.isEos(token)) return "eos";
    this.tokens.push(token);
    const text = this.decode(this.tokens);
    const end = textStop(this.stop, text);
    if (end !== null && end <= this.length) {
      this.tokens.pop();
      this.overshoot = this.length - end;
      return "stop-before";
    }
    if (this.tokens.length > this.maxTokens) {
      // Only a lookahead after a sentence's punctuation at the cap gets here.
      this.tokens.pop();
      return "truncated-before";
    }
    if (end !== null) {
      this.overshoot = text.length - end;
      return "stop";
    }
    this.length = text.length;
    if (this.tokens.length >= this.maxTokens && !(this.stop.kind === "sentence" && SENTENCE_PENDING.test(text)))
      return "truncated";
    return "continue";
  }
}
