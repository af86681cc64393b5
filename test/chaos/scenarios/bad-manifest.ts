/**
 * Bad input: the fuzzed manifest of bad-manifest.ts (several hundred bad lines among good
 * ones), submitted twice, each time to a fresh fleet (new Redis, new S3, new workers). Every
 * bad line must get a failure record naming its line and the field it was made bad in; every
 * good line a result equal to the reference; no worker may exit; and the two passes must give
 * the same records (times, workers and attempt counts aside).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { toItemId } from "../../../shared/core/ids.ts";
import type { FailureRecord } from "../../../workers/fleet/protocol/index.ts";
import {
  collectRecords,
  failuresByReason,
  openChaosEnv,
  reference,
  resultsStoredTwice,
  say,
  secretHits,
  submitArgs,
  unexpectedExits,
  untilRunEnds,
  writeScenes,
  type Row,
  type ScenarioOptions,
} from "../chaos-kit.ts";
import { writeBadManifest, type FixtureLine } from "../bad-manifest.ts";

const SEED = 15;

/** What must be the same on every run: the record without its time, worker and attempts. */
function comparable(f: FailureRecord) {
  const port = (s: string | null) => (s === null ? null : s.replace(/127\.0\.0\.1:\d+/g, "127.0.0.1:PORT"));
  return {
    line: f.line,
    id: f.id,
    item: f.item,
    stage: f.stage,
    reason: f.reason,
    field: f.field,
    message: port(f.message),
    input: f.input,
  };
}

interface Pass {
  problems: string[];
  results: number;
  failures: FailureRecord[];
  lost: number;
  doneTwice: number;
  equal: number;
  secrets: number;
  submitCode: number | null;
}

async function onePass(
  run: string,
  manifest: string,
  lines: readonly FixtureLine[],
  expected: Map<string, string | null>,
  timeoutMs: number,
): Promise<Pass> {
  const env = await openChaosEnv();
  try {
    await env.startWorkers(3);
    const submit = await env.cli(submitArgs(run, manifest));
    const problems: string[] = [];
    const state = await untilRunEnds(env, run, timeoutMs);
    if (state !== "completed") problems.push(`the run ${state === null ? "did not end in time" : `ended ${state}`}`);
    const { results, failures } = await collectRecords(env, run);
    const resultOf = new Map(results.map((r) => [r.item, r]));
    const failuresAt = new Map<number, FailureRecord[]>();
    for (const f of failures) if (f.line !== null) failuresAt.set(f.line, [...(failuresAt.get(f.line) ?? []), f]);
    let lost = 0;
    let equal = 0;
    for (const l of lines) {
      if (l.good) {
        const r = resultOf.get(toItemId(l.good.id));
        if (!r) {
          lost++;
          problems.push(
            `line ${l.line} (${l.kind}) has no result${failuresAt.has(l.line) ? `: ${failuresAt.get(l.line)![0]!.message}` : ""}`,
          );
        } else if (r.answer === expected.get(r.item)) equal++;
        else problems.push(`line ${l.line}: answer ${JSON.stringify(r.answer)} ≠ the reference's`);
        continue;
      }
      const at = failuresAt.get(l.line) ?? [];
      if (at.length === 0) {
        lost++;
        problems.push(`line ${l.line} (${l.kind}) has no failure record`);
      } else if (!at.some((f) => f.field === l.field))
        problems.push(
          `line ${l.line} (${l.kind}): the record names field ${JSON.stringify(at[0]!.field)}, not "${l.field}": ${at[0]!.message}`,
        );
    }
    const unexplained = failures.filter((f) => f.line === null || !lines[f.line - 1] || lines[f.line - 1]!.good);
    for (const f of unexplained) problems.push(`unexpected failure record ${f.item}: ${f.message}`);
    const twice = resultsStoredTwice(env, run);
    if (twice.length > 0) problems.push(`results stored twice: ${twice.join(", ")}`);
    const secrets = await secretHits(env, run);
    if (secrets.length > 0) problems.push(`secrets found: ${secrets.join("; ")}`);
    const exits = unexpectedExits(env);
    if (exits.length > 0) problems.push(`workers exited: ${exits.join("; ")}`);
    return {
      problems,
      results: results.length,
      failures,
      lost,
      doneTwice: twice.length,
      equal,
      secrets: secrets.length,
      submitCode: submit.code,
    };
  } finally {
    await env.close();
  }
}

export const badManifest = {
  name: "bad-manifest",
  title: "fuzzed manifest (bad lines among good ones), submitted twice",
  /** Good scene items (five odd ids are added on their images). */
  items: 12,
  badLines: 300,
  async run(opts: ScenarioOptions & { badLines?: number } = {}): Promise<Row> {
    const started = Date.now();
    const root = await mkdtemp(join(tmpdir(), "sb-chaos-fuzz-"));
    try {
      const dir = join(root, "fixture");
      const scenes = await writeScenes(join(dir, "scenes"), opts.items ?? this.items);
      const { manifest, lines } = await writeBadManifest(dir, scenes.items, opts.badLines ?? this.badLines, SEED);
      const good = lines.filter((l) => l.good).map((l) => l.good!);
      const expected = await reference(good);
      say(`bad-manifest: ${lines.length} lines (${good.length} good), reference answers for ${expected.size}`);
      const passes: Pass[] = [];
      for (const k of [1, 2]) {
        passes.push(await onePass("chaos-bad-manifest", manifest, lines, expected, opts.timeoutMs ?? 30 * 60_000));
        say(`bad-manifest: pass ${k} done (${passes.at(-1)!.problems.length} problems)`);
      }
      const [a, b] = passes as [Pass, Pass];
      const problems = passes.flatMap((p, i) => p.problems.map((m) => `pass ${i + 1}: ${m}`));
      const sorted = (p: Pass) =>
        p.failures.map(comparable).sort((x, y) => (x.line ?? 0) - (y.line ?? 0) || (x.item < y.item ? -1 : 1));
      const same = isDeepStrictEqual(sorted(a), sorted(b));
      if (!same) problems.push("the two passes gave different failure records");
      if (a.submitCode !== b.submitCode) problems.push(`submit exited ${a.submitCode}, then ${b.submitCode}`);
      const bad = lines.length - good.length;
      return {
        scenario: `fuzzed manifest: ${bad} bad lines among ${good.length} good (×2 fresh fleets)`,
        submitted: lines.length,
        results: a.results,
        failures: failuresByReason(a.failures),
        lost: Math.max(a.lost, b.lost),
        doneTwice: Math.max(a.doneTwice, b.doneTwice),
        equal: `${Math.min(a.equal, b.equal)}/${good.length}`,
        secrets: a.secrets + b.secrets,
        seconds: (Date.now() - started) / 1000,
        problems,
        notes: [`records identical across the two passes: ${same ? "yes" : "no"}`, `submit exited ${a.submitCode}`],
      };
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  },
};
