/**
 * `npm run bench:fleet`: the fleet's scale, measured in one run.
 *
 *   1. Redis per item, per strategy: a real run on `stagebeam worker` processes (bundled
 *      model and verifier), INFO commandstats / INFO stats of the real redis-server, MONITOR
 *      to say where stage N=4's commands go (fleet-real.ts).
 *   2. The fleet's overhead: items/s through the fleet ÷ items/s in process, stage N=4, same
 *      items, same machine, as many items in flight (a worker of its own holding the policy,
 *      --concurrency ÷ 4 job slots; `--skip-strategies` runs only this section) (fleet-real.ts).
 *   3. A simulated fleet of 1…100 workers on one redis-server: fleet workers over latency hosts
 *      that sleep as an H100 would (latency-host.ts), many to a process (sim-workers.ts);
 *      efficiency = achieved ÷ ideal items/s, with Redis CPU and the simulation's own event-loop
 *      load beside it, to tell which one saturates (fleet-sim.ts).
 *   4. The same on a real 3-node Redis Cluster, the runs sharded over one hash-tagged queue
 *      prefix per node (test/support/redis-cluster.ts), against one node.
 *
 *   npm run bench:fleet -- [--items 48] [--overhead-items 24] [--concurrency 16] [--sizes 1,10,30,100]
 *                          [--cluster-workers 100] [--warmup 12] [--window 20] [--sim-processes 2]
 *                          [--sim-concurrency 4] [--skip-real] [--skip-sim] [--skip-overhead]
 *                          [--strategies stage,swires] [--skip-strategies] [--skip-monitor] [--skip-cluster]
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startRedisServer } from "../../apps/demo/services/redis-server.ts";
import { startS3Server } from "../../apps/demo/services/s3-server.ts";
import { writeSceneSet } from "../../shared/io/scene-files.ts";
import { startFleetEnv } from "../support/fleet-env.ts";
import { startRedisCluster } from "../support/redis-cluster.ts";
import {
  countStrategy,
  idleRedisCpu,
  measureOverhead,
  startRealFleet,
  type OverheadRow,
  type StrategyRow,
  type StrategySpec,
} from "./fleet-real.ts";
import { gpuSecondsPerItem, simulate, type SimRow } from "./fleet-sim.ts";
import { H100_11B, type LatencyModel } from "./latency-host.ts";

const TARGET = { stageCommands: 150, overhead: 0.9, efficiency100: 0.9, cluster: 2.5 };

const { values } = parseArgs({
  options: {
    // Three times WORKER_CONCURRENCY: a backlog, as a fleet has; with fewer items than job
    // slots, idle slots' empty fetches (moveToActive, BZPOPMIN) dominate the counts.
    items: { type: "string", default: "48" },
    "overhead-items": { type: "string", default: "24" },
    concurrency: { type: "string", default: "16" },
    sizes: { type: "string", default: "1,10,30,100" },
    "cluster-workers": { type: "string", default: "100" },
    warmup: { type: "string", default: "12" },
    window: { type: "string", default: "20" },
    "sim-processes": { type: "string", default: "2" },
    "sim-concurrency": { type: "string", default: "4" },
    "skip-real": { type: "boolean", default: false },
    "skip-sim": { type: "boolean", default: false },
    // Only the per-strategy Redis rows, for these strategies (labels' first words, comma-separated).
    strategies: { type: "string", default: "" },
    "skip-overhead": { type: "boolean", default: false },
    // Only the fleet's overhead (section 2), no per-strategy rows.
    "skip-strategies": { type: "boolean", default: false },
    "skip-cluster": { type: "boolean", default: false },
    // MONITOR and the memory samples add to Redis's work; without them the CPU column is the fleet's own.
    "skip-monitor": { type: "boolean", default: false },
  },
});
const num = (k: keyof typeof values) => Number(values[k]);
// The in-process run's items at once (4 sequences an item under N=4), and the overhead worker's job slots.
const overheadInFlight = Math.max(1, num("concurrency") / 4);
const t0 = performance.now();
const say = (s: string) => console.log(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}`);
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(", ");

const STRATEGIES: StrategySpec[] = [
  { label: "none", settings: { strategy: "none", beam: 1, judgeMode: "score", seed: 1 } },
  { label: "best-of-n N=4 score", settings: { strategy: "best-of-n", beam: 4, judgeMode: "score", seed: 1 } },
  { label: "sentence N=4 score", settings: { strategy: "sentence", beam: 4, judgeMode: "score", seed: 1 } },
  { label: "stage N=4 score", settings: { strategy: "stage", beam: 4, judgeMode: "score", seed: 1 } },
  { label: "stage N=4 verifier", settings: { strategy: "stage", beam: 4, judgeMode: "verifier", seed: 1 } },
  { label: "swires", settings: { strategy: "swires", beam: 4, judgeMode: "score", seed: 1 } },
];

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "))
    .join("\n");
}
const f0 = (x: number) => x.toFixed(0);
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);
const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

const tmp = await mkdtemp(join(tmpdir(), "sb-bench-fleet-"));
const strategyRows: StrategyRow[] = [];
let overhead: OverheadRow | undefined;
const simRows: SimRow[] = [];
const clusterRows: SimRow[] = [];
let ideal: { seconds: number; latency: number } | undefined;
const model: LatencyModel = { ...H100_11B, slots: num("sim-concurrency") };
console.log(`bench:fleet — load average at start: ${load()}`);
const verdicts: string[][] = [["target", "figure", "target", "verdict"]];
const verdict = (name: string, value: number, shown: string, target: number, higherIsBetter: boolean, tgt: string) =>
  verdicts.push([name, shown, tgt, (higherIsBetter ? value >= target : value <= target) ? "met" : "MISSED"]);

function reportRedis(): void {
  if (!(strategyRows.length > 0)) return;
  console.log(
    `\n1. Redis per item — real run, 1 worker process on the bundled model, ${strategyRows[0]!.items} items a strategy; calls = INFO commandstats (Lua-called commands included), sent = commands clients sent (MONITOR); the bench's own polls taken out`,
  );
  console.log(
    table([
      [
        "strategy",
        "items",
        "s",
        "calls/item",
        "sent/item",
        "net in B/item",
        "net out B/item",
        "Redis CPU ms/item",
        "items/s a core",
      ],
      ...strategyRows.map((r) => [
        r.label,
        `${r.done}/${r.items}`,
        f1(r.seconds),
        f0(r.callsPerItem),
        f0(r.sentPerItem),
        f0(r.netInPerItem),
        f0(r.netOutPerItem),
        f1(1000 * r.cpuPerItem),
        f0(1 / r.cpuPerItem),
      ]),
    ]),
  );
  if (values["skip-monitor"])
    console.log("(MONITOR and memory samples off: no sent/item, Redis CPU is the fleet's and the producer's own)");
  else
    console.log(
      "(MONITOR and memory samples on: Redis CPU includes serving them, an upper bound; --skip-monitor for the fleet's own)",
    );
  const b = (x: number | null) => (x === null ? "-" : f0(x));
  console.log(
    "\nRedis bytes an item (redis-memory.ts): in flight = MEMORY USAGE of the in-flight items' jobs and the children they wait for, median of the samples (every second); finished = the end state an item (INFO memory less client and AOF buffers: ledger entries + the finished jobs BullMQ still keeps), of it the ledger's; a waiting item: bench:submit",
  );
  console.log(
    table([
      ["strategy", "in flight", "finished", "of it ledger", "in-flight samples"],
      ...strategyRows.map((r) => [
        r.label,
        b(r.memory.inFlight),
        f0(r.memory.finished),
        f0(r.memory.ledger),
        String(r.memory.samples),
      ]),
    ]),
  );
  const stage = strategyRows.find((r) => r.label === "stage N=4 score");
  if (!stage) return;
  console.log("\nwhere stage N=4's Redis time goes, µs an item (INFO commandstats usec: evalsha holds its scripts' own calls):");
  console.log(
    table([
      ["", "µs/item", "calls/item"],
      ...[...stage.delta.usec.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 12)
        .map(([k, v]) => [k, f0(v / stage.items), f1((stage.delta.calls.get(k) ?? 0) / stage.items)]),
    ]),
  );
  const top = (m: Map<string, number>, n: number, shown = f1) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => [k, shown(v / stage.items)]);
  console.log("\nwhere stage N=4's commands go, per item — sent by clients (queue or ledger, command or BullMQ script):");
  console.log(table([["", "per item"], ...top(stage.tally.sent, 16)]));
  console.log("Redis time, µs an item, by what clients sent (SLOWLOG at threshold 0, the bench's own polls in it):");
  console.log(table([["", "µs/item"], ...top(stage.tally.usec, 12, f0)]));
  console.log("called inside Lua scripts, by the queue their key belongs to:");
  console.log(table([["", "per item"], ...top(stage.tally.inLua, 8)]));
  console.log("INFO commandstats, the largest:");
  console.log(table([["", "per item"], ...top(stage.delta.calls, 10)]));
  verdict(
    "stage N=4 commands/item (commandstats)",
    stage.callsPerItem,
    f0(stage.callsPerItem),
    TARGET.stageCommands,
    false,
    "≤ 150",
  );
  verdict("stage N=4 commands/item (sent)", stage.sentPerItem, f0(stage.sentPerItem), TARGET.stageCommands, false, "≤ 150");
}

function reportOverhead(): void {
  if (!overhead) return;
  const ratio = overhead.fleet.perSecond / overhead.inProcess.perSecond;
  console.log(
    `\n2. fleet ÷ in process — stage N=4 score, ${overhead.items} items, this machine's cores for both: in process ${f2(overhead.inProcess.perSecond)} items/s (${values.concurrency} sequences: ${overheadInFlight} items in flight), fleet ${f2(overhead.fleet.perSecond)} items/s (1 worker process holding the policy only, WORKER_CONCURRENCY ${overheadInFlight}: as many items in flight; submit to last result) = ${f2(ratio)}; correct ${overhead.inProcess.correct} / ${overhead.fleet.correct}`,
  );
  const { inProcess: di, fleet: df } = overhead.decode;
  console.log(
    `where the time goes: CPU seconds in process ${f1(overhead.inProcessCpu)} (${f1(overhead.inProcess.seconds)} s wall); during the fleet run (${f1(overhead.fleet.seconds)} s wall) ${Object.entries(
      overhead.fleetCpu,
    )
      .map(([k, v]) => `${k} ${f1(v)}`)
      .join(
        ", ",
      )}; decode steps an item ${f0(di.steps / overhead.items)} in process (${f1(di.rows / di.steps)} sequences a step) vs ${f0(df.steps / overhead.items)} on the fleet (${f1(df.rows / df.steps)} a step)`,
  );
  verdict("fleet ÷ in-process items/s", ratio, f2(ratio), TARGET.overhead, true, "≥ 0.9");
}

function reportSim(): void {
  if (!ideal) return;
  console.log(
    `\n3. simulated fleet — ${model.label}: ${model.decodeStepMs} ms a decoded token, ${model.prefillMsPerToken} ms a prefill token, ${model.openMs} ms an image; ${model.slots} sequences at once a worker (WORKER_CONCURRENCY ${model.slots}); stage N=4 score: ${f2(ideal.seconds)} GPU s an item, ${f1(ideal.latency)} s alone. Workers run many to a Node process (${values["sim-processes"]} processes): one event loop serves all of a process's workers, so "sim loop" near 100% means the simulation, not Redis, is the limit.`,
  );
  const rows = [...simRows, ...clusterRows];
  console.log(
    table([
      [
        "",
        "workers",
        "ideal/s",
        "achieved/s",
        "efficiency",
        "GPU busy",
        "items",
        "warm-up s",
        "Redis CPU",
        "Redis calls/s",
        "Redis ms/item",
        "sim loop",
        "sim CPU",
        "machine CPU",
      ],
      ...rows.map((r) => [
        r.label,
        String(r.workers),
        f2(r.ideal),
        f2(r.achieved),
        f2(r.achieved / r.ideal),
        pct(r.gpuBusy),
        `${r.itemsInWindow} in ${f0(r.windowSeconds)} s`,
        f0(r.warmupSeconds),
        r.redisCpu.map(pct).join("+"),
        f0(r.redisCommandsPerSecond),
        f1((1000 * Math.max(...r.redisCpu)) / (r.achieved / r.redisCpu.length)),
        pct(r.simEventLoop),
        `${f2(r.simCpu)} cores`,
        `${f2(r.machineCpu)}/${cpus().length} cores`,
      ]),
    ]),
  );
  const biggest = simRows.at(-1);
  if (biggest && biggest.achieved > 0) {
    const msPerItem = (1000 * biggest.redisCpu[0]!) / biggest.achieved;
    const full = 1000 / msPerItem;
    console.log(
      `Redis on one node spent ${f1(msPerItem)} ms of CPU an item at ${biggest.workers} workers: one core is full at ≈ ${f1(full)} items/s ≈ ${f0(full / (model.slots / ideal.seconds))} workers of this model (derived from the measured CPU per item, not reached here).`,
    );
  }
  const at100 = simRows.find((r) => r.workers === 100);
  if (at100)
    verdict(
      "simulated 100 workers efficiency",
      at100.achieved / at100.ideal,
      f2(at100.achieved / at100.ideal),
      TARGET.efficiency100,
      true,
      "≥ 0.9",
    );
  const c = clusterRows[0];
  const one = c && simRows.find((r) => r.workers === c.workers);
  if (c && one) {
    const x = c.achieved / one.achieved;
    console.log(`\n4. 3-node cluster ÷ 1 node at ${c.workers} workers: ${f2(x)}×`);
    verdict(`3-node cluster ÷ 1 node (${c.workers} workers)`, x, `${f2(x)}×`, TARGET.cluster, true, "≥ 2.5×");
  }
}

try {
  if (!values["skip-real"]) {
    const items = num("items");
    const overheadItems = num("overhead-items");
    const setDir = join(tmp, "scenes");
    await writeSceneSet(setDir, { count: overheadItems, seed: 3000 });
    const countSet = join(tmp, "count-scenes");
    await writeSceneSet(countSet, { count: items, seed: 4000 });
    const env = await startFleetEnv();
    try {
      const only = values.strategies.split(",").filter((x) => x !== "");
      const counted = values["skip-strategies"]
        ? []
        : STRATEGIES.filter((s) => only.length === 0 || only.some((o) => s.label.startsWith(o)));
      if (counted.length > 0) {
        const fleet = await startRealFleet(env, 1, num("concurrency"));
        try {
          say(`real fleet: 1 worker process (bundled policy + verifier), WORKER_CONCURRENCY ${values.concurrency}`);
          const idleCpu = await idleRedisCpu(env, 10);
          say(`idle fleet: Redis ${f1(1000 * idleCpu)} ms of CPU a second, taken out of the CPU an item below`);
          for (const spec of counted) {
            const run = `count-${STRATEGIES.indexOf(spec)}`;
            const row = await countStrategy(env, fleet, join(countSet, "items.jsonl"), items, spec, run, {
              monitor: !values["skip-monitor"],
              idleCpu,
            });
            strategyRows.push(row);
            say(`${spec.label}: ${row.done}/${items} items in ${f1(row.seconds)} s, ${f0(row.callsPerItem)} calls/item`);
          }
          reportRedis();
        } finally {
          await fleet.close();
        }
      }
      if (!values["skip-overhead"]) {
        // The same settings on both sides: the in-process run's items at once are the worker's
        // job slots (a child job is an item's whole search under stage N=4 score), so both
        // decode the same mix of items; and the worker holds the one model the in-process run
        // loads (the pairwise judge needs no verifier), not a second engine beside it.
        const fleet = await startRealFleet(env, 1, overheadInFlight, "policy");
        try {
          say(`overhead fleet: 1 worker process (bundled policy), WORKER_CONCURRENCY ${overheadInFlight}`);
          overhead = await measureOverhead(env, fleet, setDir, overheadItems, overheadInFlight, "overhead");
          say(`overhead: in process ${f1(overhead.inProcess.seconds)} s, fleet ${f1(overhead.fleet.seconds)} s`);
          reportOverhead();
        } finally {
          await fleet.close();
        }
      }
    } finally {
      await env.close();
    }
  }

  if (!values["skip-sim"]) {
    ideal = await gpuSecondsPerItem(model, 8);
    const idealPerWorker = model.slots / ideal.seconds;
    say(
      `latency model: ${f2(ideal.seconds)} GPU slot-s an item, ${f1(ideal.latency)} s alone; ideal ${f2(idealPerWorker)} items/s a worker`,
    );
    const s3 = await startS3Server();
    const images = join(tmp, "sim-scenes");
    await writeSceneSet(images, { count: 8, seed: 5000 });
    const files = (await readdir(images)).filter((f) => f.endsWith(".png"));
    const common = {
      model,
      processes: num("sim-processes"),
      concurrency: num("sim-concurrency"),
      idealPerWorker,
      warmupSeconds: num("warmup"),
      windowSeconds: num("window"),
      s3,
      dir: images,
      images: files,
    };
    try {
      const redis = await startRedisServer();
      try {
        const single = { label: "1 node", target: { url: redis.url }, servers: [redis], prefixes: ["{sb}"] };
        for (const w of values.sizes.split(",").map(Number)) {
          const row = await simulate(single, { ...common, workers: w });
          simRows.push(row);
          say(`simulated ${w} workers, 1 node: ${f2(row.achieved)} / ${f2(row.ideal)} items/s`);
        }
        if (!values["skip-cluster"] && !simRows.some((r) => r.workers === num("cluster-workers"))) {
          simRows.push(await simulate(single, { ...common, workers: num("cluster-workers") }));
        }
      } finally {
        await redis.stop();
      }
      const cluster = values["skip-cluster"] ? undefined : await startRedisCluster(3);
      if (cluster)
        try {
          const tags = await cluster.tagsPerNode(1);
          const sharded = {
            label: "3-node cluster",
            target: { url: cluster.url, cluster: true },
            servers: cluster.nodes,
            prefixes: tags.map(([t]) => `{${t}}`),
          };
          const row = await simulate(sharded, { ...common, workers: num("cluster-workers") });
          clusterRows.push(row);
          say(`simulated ${row.workers} workers, 3-node cluster: ${f2(row.achieved)} / ${f2(row.ideal)} items/s`);
        } finally {
          await cluster.stop();
        }
    } finally {
      await s3.stop();
      reportSim();
    }
  }
} finally {
  await rm(tmp, { recursive: true, force: true });
}

console.log(`\nbench:fleet — ${((performance.now() - t0) / 1000).toFixed(0)} s, load average at end: ${load()}`);
console.log(`\ntargets\n${table(verdicts)}`);
