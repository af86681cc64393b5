/**
 * `npm run test:chaos`: the chaos suite. Each scenario runs a fleet on real servers (see
 * chaos-kit.ts), injects its fault and checks the run: 0 lost, 0 done twice, every answer
 * equal to a clean in-process run, no secret in any output or S3 object. One table at the end;
 * exit 1 when any scenario failed a check.
 *
 *   npm run test:chaos -- [--scenario NAME]... [--items N] [--kill-every SECONDS] [--bad-lines N]
 *
 * NAME: one of the names printed by --list (default: all of them, about 30 minutes).
 */
import { parseArgs } from "node:util";
import { closeReference, formatTable, runFaultScenario, say, type Row, type ScenarioOptions } from "./chaos-kit.ts";
import { badManifest } from "./scenarios/bad-manifest.ts";
import { redisFault } from "./scenarios/redis-faults.ts";
import { s3Outage } from "./scenarios/s3-outage.ts";
import { workerKills } from "./scenarios/worker-kills.ts";

const { values } = parseArgs({
  options: {
    scenario: { type: "string", multiple: true },
    items: { type: "string" },
    "kill-every": { type: "string", default: "10" },
    "bad-lines": { type: "string" },
    list: { type: "boolean", default: false },
  },
});
const opts: ScenarioOptions = values.items !== undefined ? { items: Number(values.items) } : {};

const SCENARIOS: Record<string, () => Promise<Row>> = {};
for (const s of [
  s3Outage(30),
  s3Outage(180),
  workerKills(Number(values["kill-every"])),
  redisFault("shutdown"),
  redisFault("kill"),
  redisFault("lost-second"),
])
  SCENARIOS[s.name] = () => runFaultScenario(s, opts);
SCENARIOS[badManifest.name] = () =>
  badManifest.run({ ...opts, ...(values["bad-lines"] !== undefined ? { badLines: Number(values["bad-lines"]) } : {}) });

if (values.list) {
  console.log(Object.keys(SCENARIOS).join("\n"));
  process.exit(0);
}
const chosen = (values.scenario ?? Object.keys(SCENARIOS)).flatMap((s) => s.split(","));
const unknown = chosen.filter((s) => !(s in SCENARIOS));
if (unknown.length > 0) {
  console.error(`unknown scenario ${unknown.join(", ")}; expected one of ${Object.keys(SCENARIOS).join(", ")}`);
  process.exit(2);
}

const rows: Row[] = [];
try {
  for (const name of chosen) {
    say(`${name}: start`);
    const row = await SCENARIOS[name]!().catch(
      (err: Error): Row => ({
        scenario: name,
        submitted: 0,
        results: 0,
        failures: {},
        lost: 0,
        doneTwice: 0,
        equal: "-",
        secrets: 0,
        seconds: 0,
        problems: [`the scenario failed to run: ${err.stack ?? err.message}`],
        notes: [],
      }),
    );
    rows.push(row);
    say(`${name}: ${row.problems.length === 0 ? "pass" : "FAIL"} (${Math.round(row.seconds)} s; ${row.notes.join("; ")})`);
    for (const p of row.problems) console.log(`  ${p}`);
  }
} finally {
  await closeReference();
}
console.log(`\n${formatTable(rows)}\n`);
for (const r of rows) if (r.notes.length > 0) console.log(`${r.scenario}: ${r.notes.join("; ")}`);
const failed = rows.filter((r) => r.problems.length > 0);
if (failed.length > 0) {
  console.log(`\n${failed.length} of ${rows.length} scenarios FAILED: ${failed.map((r) => r.scenario).join("; ")}`);
  process.exit(1);
}
console.log(`\nall ${rows.length} scenarios passed`);
