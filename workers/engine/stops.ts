/**
 * Stop conditions, decided per sampled token by a table lookup (no decoding):
 * * stage — the stage's end tag, one special token;
 * * sentence — where shared/core/protocol/sentences.ts puts a sentence end: after any stage end tag,
 *   or after `.`, `?`, `!` when the next text starts with whitespace or an opening tag. That
 *   next token is only a lookahead: it is dropped, and the sentence ends at the punctuation;
 * * end — only end of sequence.
 * End of sequence stops every rule and is not part of the text. A sequence at maxTokens right
 * after a punctuation token samples one lookahead to tell whether the sentence ended there.
 *
 * The reference work pattern instead decodes the whole text after every token (`textStop`).
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

export class StopTables {
  private readonly cache = new Map<string, StopTable>();
  private readonly stageEnd = new Map<Stage, number>();

  constructor(
    private readonly tokenizer: StopTokenizer,
    readonly vocab: number,
    readonly eosIds: readonly number[],
  ) {
    for (const stage of STAGES) {
      const ids = tokenizer.encode(closeTag(stage));
      if (ids.length !== 1) {
        throw new Error(`tokenizer.json: stage tag ${closeTag(stage)} is ${ids.length} tokens; expected one special token`);
      }
      this.stageEnd.set(stage, ids[0]!);
    }
  }

  stageEndId(stage: Stage): number {
    return this.stageEnd.get(stage)!;
  }

  table(stop: Stop): StopTable {
    const key = stop.kind === "stage" ? `stage:${stop.stage}` : stop.kind;
    let table = this.cache.get(key);
    if (table !== undefined) return table;
    table = new Uint8Array(this.vocab);
    if (stop.kind === "stage") table[this.stageEndId(stop.stage)] = F_STOP;
    if (stop.kind === "sentence") {
      for (let id = 0; id < this.vocab; id++) {
        const text = this.tokenizer.surface(id);
        if (text === "") continue;
        if (PUNCT_END.test(text)) table[id]! |= F_PUNCT;
        if (OPENS.test(text)) table[id]! |= F_OPENS;
      }
      for (const stage of STAGES) table[this.stageEndId(stage)] = F_STOP;
    }
    for (const id of this.eosIds) if (id < this.vocab) table[id] = F_EOS;
    this.cache.set(key, table);
    return table;
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

/** A sequence's progress against its stop rule, advanced once per sampled token. */
export class StopState {
  /** Tokens kept so far. */
  kept = 0;
  private punct = false;
  constructor(
    readonly table: StopTable,
    readonly maxTokens: number,
  ) {}

  advance(token: number): StepOutcome {
    const f = this.table[token] ?? 0;
    if (f & F_EOS) return "eos";
    if (this.punct && f & F_OPENS) return "stop-before";
    if (this.kept >= this.maxTokens) return "truncated-before";
    this.kept++;
    if (f & F_STOP) return "stop";
    this.punct = (f & F_PUNCT) !== 0;
    if (this.kept >= this.maxTokens && !this.punct) return "truncated";
    return "continue";
  }
}

/**
 * The reference's check on the whole decoded continuation: the length of text the candidate
 * keeps when its rule is met, else null. (End of sequence is checked by token id.)
 */
export function textStop(stop: Stop, text: string): number | null {
  switch (stop.kind) {
    case "stage":
      return text.endsWith(closeTag(stop.stage)) ? text.length : null;
    case "sentence":
      return sentenceEnd(text);
    case "end":
      return null;
  }
}

const TEXT_PUNCT_END = /[.?!]$/;

/**
 * The reference's stop check: after every token the whole continuation is decoded and tested
 * (`textStop`). Same outcomes as StopState for tokenizers whose tokens never hold a sentence
 * end inside them, at the cost of a full decode per token.
 */
export class TextStopState {
  readonly tokens: number[] = [];
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
    if (this.tokens.length > this.maxTokens) {
      // Only a lookahead after a sentence's punctuation at the cap gets here.
      this.tokens.pop();
      return end !== null && end < text.length ? "stop-before" : "truncated-before";
    }
    if (end !== null) {
      if (end >= text.length) return "stop";
      this.tokens.pop();
      return "stop-before";
    }
    if (this.tokens.length >= this.maxTokens && !(this.stop.kind === "sentence" && TEXT_PUNCT_END.test(text))) return "truncated";
    return "continue";
  }
}
