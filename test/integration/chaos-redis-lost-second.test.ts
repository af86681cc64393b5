/**
 * The chaos suite's hardest Redis fault, shortened to fit `npm test` (the whole suite is
 * `npm run test:chaos`): three worker processes on the bundled model, Redis (AOF everysec,
 * a password with `/`, `@`, `:`, `%`, `#` and non-ASCII) killed with the last second of its
 * AOF lost right after an item completed, then restarted. Every item must complete once, with
 * the in-process answer, and no credential may appear in any log, output or S3 object.
 */
import { afterAll, describe, expect, it } from "vitest";
import { closeReference, runFaultScenario } from "../chaos/chaos-kit.ts";
import { redisFault } from "../chaos/scenarios/redis-faults.ts";

afterAll(closeReference);

describe("chaos: Redis losing its last second of writes", () => {
  it("loses nothing, does nothing twice, answers as in process, prints no secret", async () => {
    const row = await runFaultScenario(redisFault("lost-second"), { items: 12, timeoutMs: 240_000 });
    expect(row.problems).toEqual([]);
    expect(row).toMatchObject({ submitted: 12, results: 12, failures: {}, lost: 0, doneTwice: 0, equal: "12/12", secrets: 0 });
  }, 300_000);
});
