/**
 * Where a fleet's Redis commands go, from MONITOR: every command a client sent (BullMQ's
 * scripts named, by their sha) and every command a Lua script called, each attributed to the
 * queue or ledger its first key belongs to. For `npm run bench:fleet`; MONITOR slows the
 * server, so only the counting runs use it, never the timed ones.
 */
import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Redis } from "ioredis";

/** sha1 → BullMQ script name, from the scripts BullMQ loads (ioredis sends EVALSHA of their sha1). */
async function bullmqScripts(): Promise<Map<string, string>> {
  const dir = join(dirname(createRequire(import.meta.url).resolve("bullmq")), "scripts");
  const names = new Map<string, string>();
  for (const file of await readdir(dir)) {
    if (!file.endsWith(".js") || file === "index.js") continue;
    const mod = (await import(join(dir, file))) as Record<string, { name?: unknown; content?: unknown }>;
    for (const s of Object.values(mod)) {
      if (typeof s.content === "string" && typeof s.name === "string")
        names.set(createHash("sha1").update(s.content).digest("hex"), s.name);
    }
  }
  return names;
}

export interface CommandTally {
  /** `<kind> <command>` → calls sent by clients (EVALSHA shown as the script's name). */
  sent: Map<string, number>;
  /** `<kind>` → calls made inside Lua scripts. */
  inLua: Map<string, number>;
  sentTotal: number;
  inLuaTotal: number;
  /** `<kind> <script or command>` → microseconds Redis spent on it (SLOWLOG at threshold 0). */
  usec: Map<string, number>;
}

const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

/** The queue (request, generate, judge, verify, feed), `ledger`, or `-` that a key belongs to. */
function kindOf(key: string | undefined, prefix: string): string {
  if (key === undefined || !key.startsWith(`${prefix}:`)) return "-";
  const part = key.slice(prefix.length + 1).split(":")[0]!;
  return part === "stagebeam" ? "ledger" : part;
}

/** The `host:port` MONITOR names a client's connection by. */
export function monitorSource(client: Redis): string {
  const stream = (client as unknown as { stream?: { localAddress?: string; localPort?: number } }).stream;
  if (stream?.localPort === undefined) throw new Error("the client is not connected");
  return `${stream.localAddress}:${stream.localPort}`;
}

/** Tallies what every client but `ignore` (sources, monitorSource) sends, on a monitor connection of its own. */
export async function startMonitor(
  redis: Redis,
  prefix: string,
  ignore: ReadonlySet<string> = new Set(),
): Promise<{ stop(): Promise<CommandTally> }> {
  const scripts = await bullmqScripts();
  const tally: CommandTally = { sent: new Map(), inLua: new Map(), sentTotal: 0, inLuaTotal: 0, usec: new Map() };
  // Every command's duration, to say which scripts the time goes to (read and reset every second:
  // the log is capped).
  const oldThreshold = ((await redis.config("GET", "slowlog-log-slower-than")) as string[])[1]!;
  await redis.config("SET", "slowlog-log-slower-than", "0");
  await redis.config("SET", "slowlog-max-len", "100000");
  await redis.slowlog("RESET");
  const nameOf = (args: string[]) => {
    const command = args[0]!.toLowerCase();
    if (command === "evalsha") return `${kindOf(args[3], prefix)} ${scripts.get(args[1]!) ?? `script ${args[1]!.slice(0, 8)}`}`;
    return `${kindOf(args[1], prefix)} ${command}`;
  };
  const drain = async () => {
    const entries = (await redis.slowlog("GET", -1)) as [number, number, number, string[]][];
    await redis.slowlog("RESET");
    for (const [, , us, args] of entries) {
      const command = args[0]!.toLowerCase();
      if (command === "info" || command === "slowlog" || command === "monitor" || command === "config") continue;
      const k = nameOf(args);
      tally.usec.set(k, (tally.usec.get(k) ?? 0) + us);
    }
  };
  const timer = setInterval(() => void drain().catch(() => {}), 1000);
  const monitor = await redis.monitor();
  monitor.on("monitor", (_time: string, args: string[], source: string) => {
    const command = args[0]!.toLowerCase();
    if (source === "lua") {
      tally.inLuaTotal++;
      bump(tally.inLua, kindOf(args[1], prefix));
      return;
    }
    if (command === "info" || command === "monitor" || ignore.has(source)) return;
    tally.sentTotal++;
    if (command === "evalsha") {
      const name = scripts.get(args[1]!) ?? `script ${args[1]!.slice(0, 8)}`;
      bump(tally.sent, `${kindOf(args[3], prefix)} ${name}`);
    } else if (command === "eval") {
      bump(tally.sent, `${kindOf(args[3], prefix)} eval`);
    } else {
      bump(tally.sent, `${kindOf(args[1], prefix)} ${command}`);
    }
  });
  return {
    async stop() {
      // Let the last lines arrive.
      await new Promise((r) => setTimeout(r, 200));
      monitor.disconnect();
      clearInterval(timer);
      await drain();
      await redis.config("SET", "slowlog-log-slower-than", oldThreshold);
      return tally;
    },
  };
}
