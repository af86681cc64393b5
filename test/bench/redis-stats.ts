/**
 * What a Redis server did between two readings, for the benchmarks: calls per command
 * (INFO commandstats, commands that Lua scripts call included, as Redis counts them), bytes in
 * and out (INFO stats) and CPU seconds (INFO cpu, the server's own user + system time).
 */
import type { Redis } from "ioredis";

export interface RedisReading {
  calls: Map<string, number>;
  /** Microseconds spent per command (INFO commandstats usec; a script's own calls counted in it and apart). */
  usec: Map<string, number>;
  netIn: number;
  netOut: number;
  cpuSeconds: number;
  at: number;
}

export interface RedisDelta {
  /** Calls per command name (`evalsha`, `hget`, `client|setname`, …), the readings' own INFO excluded. */
  calls: Map<string, number>;
  usec: Map<string, number>;
  totalCalls: number;
  netIn: number;
  netOut: number;
  cpuSeconds: number;
  seconds: number;
}

const field = (text: string, name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(text)?.[1] ?? 0);

export function commandCalls(commandstats: string): Map<string, number> {
  const calls = new Map<string, number>();
  for (const m of commandstats.matchAll(/^cmdstat_([\w|-]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  return calls;
}

export function commandUsec(commandstats: string): Map<string, number> {
  const usec = new Map<string, number>();
  for (const m of commandstats.matchAll(/^cmdstat_([\w|-]+):calls=\d+,usec=(\d+)/gm)) usec.set(m[1]!, Number(m[2]));
  return usec;
}

export async function readRedis(redis: Redis): Promise<RedisReading> {
  const text = await redis.info("everything");
  return {
    calls: commandCalls(text),
    usec: commandUsec(text),
    netIn: field(text, "total_net_input_bytes"),
    netOut: field(text, "total_net_output_bytes"),
    cpuSeconds: field(text, "used_cpu_user") + field(text, "used_cpu_sys"),
    at: performance.now(),
  };
}

export function redisDelta(before: RedisReading, after: RedisReading): RedisDelta {
  const diff = (a: Map<string, number>, b: Map<string, number>) => {
    const out = new Map<string, number>();
    for (const [name, n] of a) {
      const d = n - (b.get(name) ?? 0);
      if (name !== "info" && d > 0) out.set(name, d);
    }
    return out;
  };
  const calls = diff(after.calls, before.calls);
  return {
    calls,
    usec: diff(after.usec, before.usec),
    totalCalls: [...calls.values()].reduce((a, b) => a + b, 0),
    netIn: after.netIn - before.netIn,
    netOut: after.netOut - before.netOut,
    cpuSeconds: after.cpuSeconds - before.cpuSeconds,
    seconds: (after.at - before.at) / 1000,
  };
}

/** The sum of several servers' deltas (the nodes of a cluster). */
export function sumDeltas(deltas: readonly RedisDelta[]): RedisDelta {
  const add = (f: (d: RedisDelta) => Map<string, number>) => {
    const out = new Map<string, number>();
    for (const d of deltas) for (const [name, n] of f(d)) out.set(name, (out.get(name) ?? 0) + n);
    return out;
  };
  const calls = add((d) => d.calls);
  const sum = (f: (d: RedisDelta) => number) => deltas.reduce((a, d) => a + f(d), 0);
  return {
    calls,
    usec: add((d) => d.usec),
    totalCalls: sum((d) => d.totalCalls),
    netIn: sum((d) => d.netIn),
    netOut: sum((d) => d.netOut),
    cpuSeconds: sum((d) => d.cpuSeconds),
    seconds: Math.max(0, ...deltas.map((d) => d.seconds)),
  };
}
