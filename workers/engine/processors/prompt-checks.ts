/** Checks on a rendered prompt and its ids that every family processor makes. */
import { ItemInputError } from "../errors.ts";

/** Throws unless the rendered prompt holds the image placeholder exactly once. */
export function requireOneImageToken(itemId: string, prompt: string, imageToken: string): void {
  const count = prompt.split(imageToken).length - 1;
  if (count !== 1) {
    throw new ItemInputError(
      itemId,
      "question",
      `the rendered prompt holds the image placeholder ${JSON.stringify(imageToken)} ${count} times; expected once (the question must not contain it)`,
    );
  }
}

export function countId(ids: readonly number[], id: number): number {
  let n = 0;
  for (const x of ids) if (x === id) n++;
  return n;
}
