/**
 * Sentence segmentation for sentence-level search: a sentence ends right after `.`, `?` or
 * `!`. Tags stay with the sentence they fall in, so "</SUMMARY><CAPTION>The red …." is one
 * sentence. The engine stops a sentence candidate on those tokens; judge training data is
 * cut with this same function.
 */
export const SENTENCE_END = /[.?!]$/;

export function splitSentences(text: string): string[] {
  return text.split(/(?<=[.?!])/).filter((s) => s.length > 0);
}
