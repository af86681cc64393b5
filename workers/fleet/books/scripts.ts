/**
 * The run books' Lua scripts (`lua/*.lua`, one script a file, its KEYS and ARGV named in its
 * header), defined once on each Redis client with ioredis's `defineCommand`: a call sends
 * EVALSHA, and the script itself only when Redis answers NOSCRIPT (a restart, SCRIPT FLUSH, a
 * node of a cluster that has not seen it yet). Every key a script touches is one run's, under
 * the queue prefix's hash tag, so on a Redis Cluster a script runs on one node.
 *
 * A line `--- @include "name"` is replaced by `lua/name.lua` (without its header) when the
 * script is read, as BullMQ's script loader does, so that helpers shared by several scripts are
 * written once.
 */
import { readFileSync } from "node:fs";
import type { FleetRedis } from "../protocol/index.ts";

const INCLUDE = /^--- @include "([a-z-]+)"$/gm;
const HEADER = /^--\[\[[\s\S]*?\]\]\n/;

function readScript(name: string, seen: ReadonlySet<string> = new Set()): string {
  if (seen.has(name)) throw new Error(`lua/${name}.lua includes itself`);
  const text = readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), "utf8");
  return text.replace(INCLUDE, (_, inc: string) => readScript(inc, new Set([...seen, name])).replace(HEADER, ""));
}

/** Each script: its file under lua/ and how many of its arguments are keys. */
const SCRIPTS = {
  runBooksRecordOutcome: { file: "record-outcome", keys: 5 },
  runBooksResetOutcome: { file: "reset-outcome", keys: 2 },
  runBooksTransition: { file: "transition", keys: 1 },
  runBooksFinishFeed: { file: "finish-feed", keys: 3 },
} as const;

type Arg = string | number;
/** A client with the run books' scripts defined on it. */
export type BookRedis = FleetRedis & { [name in keyof typeof SCRIPTS]: (...args: Arg[]) => Promise<unknown> };

const LUA = Object.fromEntries(Object.entries(SCRIPTS).map(([name, s]) => [name, readScript(s.file)]));
const defined = new WeakSet<FleetRedis>();

/** The client, with the scripts defined on it (once per client). */
export function withBookScripts(redis: FleetRedis): BookRedis {
  if (!defined.has(redis)) {
    for (const [name, s] of Object.entries(SCRIPTS)) redis.defineCommand(name, { lua: LUA[name]!, numberOfKeys: s.keys });
    defined.add(redis);
  }
  return redis as BookRedis;
}
