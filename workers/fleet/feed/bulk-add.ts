/**
 * Adding many jobs at once. `Queue.addBulk` builds its whole pipeline before it sends any of
 * it, so the producer's CPU and Redis take turns: Node builds a thousand job scripts while
 * Redis idles, then idles while Redis runs them. Cut into parts, with the next part built
 * while Redis runs the one before, the two work at the same time; and with two parts in
 * flight at most, only those two are held in memory, not the whole chunk. One connection
 * carries every part, so the jobs are added in order.
 */

/** Jobs per pipeline: small enough that Redis starts early, large enough to amortise a round trip. */
export const ADD_PART_SIZE = 100;

export async function addInParts<J>(
  queue: { addBulk(jobs: J[]): Promise<unknown> },
  jobs: readonly J[],
  partSize = ADD_PART_SIZE,
): Promise<void> {
  let previous: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < jobs.length; i += partSize) {
    const sent = queue.addBulk(jobs.slice(i, i + partSize));
    // Awaited below; until then a rejection must not count as unhandled.
    sent.catch(() => {});
    await previous;
    previous = sent;
  }
  await previous;
}
