/**
 * Sentence boundaries for the sentence-level strategy. The engine stops a sentence candidate
 * where this says, and the judge's training pairs are cut with it, so both agree on one rule.
 */

// `.`, `?` or `!` followed by whitespace or an opening tag; or any stage end tag (a sentence
// that ends a stage keeps its end tag, so `…objects.</SUMMARY>` is one sentence).
const SENTENCE_END_RE = /[.?!](?=\s|<(?!\/))|<\/(?:SUMMARY|CAPTION|REASONING|CONCLUSION)>/g;

/**
 * Index just past the first sentence end in `text` at or after `from`, or null when none is
 * certain yet (a final `.` needs the next character to tell `3.` from `3.5`).
 */
export function sentenceEnd(text: string, from = 0): number | null {
  const re = new RegExp(SENTENCE_END_RE.source, "g");
  re.lastIndex = from;
  const m = re.exec(text);
  return m === null ? null : m.index + m[0].length;
}

/** Cuts a complete text into its sentences; whatever follows the last boundary is the last one. */
export function splitSentences(text: string): string[] {
  const sentences: string[] = [];
  let start = 0;
  for (let end = sentenceEnd(text, start); end !== null; end = sentenceEnd(text, start)) {
    sentences.push(text.slice(start, end));
    start = end;
  }
  if (start < text.length) sentences.push(text.slice(start));
  return sentences;
}
