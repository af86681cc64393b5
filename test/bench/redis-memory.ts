/**
 * Redis memory by item state, for the README's "Sizing Redis", measured while a run goes:
 *
 *   in flight  what the run's in-flight items hold: for each request job that is active or waits
 *              for its children, MEMORY USAGE of its job hash, its dependencies, processed and
 *              lock keys, and of every child job it still waits for (hash and lock), summed and
 *              divided by the number of such items; the median over the samples
 *   finished   the end state's bytes an item (INFO memory less client buffers and the AOF buffer,
 *              so that MONITOR's output and the AOF do not count; everything done, the queues
 *              idle): its ledger entries, kept until the run expires after `export`, and its
 *              finished jobs, which BullMQ keeps for a while (REQUEST_JOB_OPTIONS,
 *              CHILD_JOB_OPTIONS), with their events
 *   ledger     of `finished`, the run ledger's items and outcomes hashes (MEMORY USAGE)
 *
 * A waiting item's bytes are bench:submit's (a backlog of 100,000, as a real one is).
 */
import { type FleetRedis, runKeys } from "../../workers/fleet/protocol/index.ts";

export interface MemorySample {
  /** Data memory less what it was before the run. */
  bytes: number;
  waiting: number;
  inFlight: number;
  finished: number;
  /** What the in-flight items' jobs hold (MEMORY USAGE), when this sample measured it. */
  inFlightBytes: number | null;
}

export interface MemoryPerItem {
  inFlight: number | null;
  finished: number;
  /** Of `finished`: the run ledger's entries (items and outcomes hashes, MEMORY USAGE). */
  ledger: number;
  samples: number;
}

const field = (info: string, name: string) => Number(new RegExp(`^${name}:(\\d+)`, "m").exec(info)?.[1] ?? 0);

/** Data memory: used_memory less what clients' buffers (MONITOR's output) and the AOF buffer hold. */
export async function dataBytes(client: FleetRedis): Promise<number> {
  const info = await client.info("memory");
  return field(info, "used_memory") - field(info, "mem_clients_normal") - field(info, "mem_aof_buffer");
}

const bulkSize = (s: string) => {
  const n = Buffer.byteLength(s);
  return `$${n}\r\n`.length + n + 2;
};

/** The bytes of a reply in RESP2, as Redis counts them in total_net_output_bytes. */
function replySize(reply: unknown): number {
  if (reply === null) return "$-1\r\n".length;
  if (typeof reply === "number") return `:${reply}\r\n`.length;
  if (Array.isArray(reply)) return reply.reduce<number>((sum, r) => sum + replySize(r), `*${reply.length}\r\n`.length);
  return bulkSize(String(reply));
}

export class MemorySampler {
  readonly samples: MemorySample[] = [];
  /** Commands, and bytes each way, this sampler sent: the bench takes them out of its own counts. */
  commands = 0;
  netIn = 0;
  netOut = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly client: FleetRedis,
    private readonly prefix: string,
    private readonly run: string,
    private readonly items: number,
    private readonly before: number,
  ) {}

  private count = 0;

  /** One command, counted with its bytes each way. */
  private async send(...args: string[]): Promise<unknown> {
    const reply = await this.client.call(args[0]!, ...args.slice(1));
    this.commands++;
    this.netIn += args.reduce((sum, a) => sum + bulkSize(a), `*${args.length}\r\n`.length);
    this.netOut += replySize(reply);
    return reply;
  }

  /** MEMORY USAGE of every key of the run's in-flight request jobs and of the children they wait for. */
  private async inFlightBytes(): Promise<{ bytes: number; jobs: number }> {
    const q = `${this.prefix}:request`;
    const head = `${this.run}/`;
    const ids = [
      ...((await this.send("LRANGE", `${q}:active`, "0", "-1")) as string[]),
      ...((await this.send("ZRANGE", `${q}:waiting-children`, "0", "-1")) as string[]),
    ].filter((id) => id.startsWith(head));
    const jobKeys = ids.map((id) => `${q}:${id}`);
    const children = (
      await Promise.all(jobKeys.map((k) => this.send("SMEMBERS", `${k}:dependencies`) as Promise<string[]>))
    ).flat();
    const keys = [
      ...jobKeys.flatMap((k) => [k, `${k}:dependencies`, `${k}:processed`, `${k}:lock`]),
      ...children.flatMap((k) => [k, `${k}:lock`]),
    ];
    const sizes = await Promise.all(keys.map((k) => this.send("MEMORY", "USAGE", k, "SAMPLES", "0")));
    return { bytes: sizes.reduce<number>((sum, n) => sum + Number(n ?? 0), 0), jobs: ids.length };
  }

  async sample(): Promise<MemorySample> {
    const q = `${this.prefix}:request`;
    const [info, waiting, active, children, counts] = (await Promise.all([
      this.send("INFO", "memory"),
      this.send("LLEN", `${q}:wait`),
      this.send("LLEN", `${q}:active`),
      this.send("ZCARD", `${q}:waiting-children`),
      this.send("HMGET", runKeys(this.prefix, this.run).counts, "completed", "failed"),
    ])) as [string, number, number, number, (string | null)[]];
    const bytes = field(info, "used_memory") - field(info, "mem_clients_normal") - field(info, "mem_aof_buffer");
    const finished = Number(counts[0] ?? 0) + Number(counts[1] ?? 0);
    // The key walk costs a few dozen commands: every fourth sample.
    const walk = this.count++ % 4 === 0 ? await this.inFlightBytes() : null;
    const s = {
      bytes: bytes - this.before,
      waiting,
      inFlight: Math.min(active + children, this.items - finished),
      finished,
      inFlightBytes: walk !== null && walk.jobs > 0 ? walk.bytes / walk.jobs : null,
    };
    this.samples.push(s);
    return s;
  }

  start(everyMs: number): void {
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      void this.sample().finally(() => {
        this.busy = false;
      });
    }, everyMs);
  }

  /** Stops the periodic samples (before the bench reads its command counts). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 20));
  }

  /** Takes the end state, once every item is finished and the queues are idle, and works out the bytes an item. */
  async finish(): Promise<MemoryPerItem> {
    await this.stop();
    const end = await this.sample();
    const keys = runKeys(this.prefix, this.run);
    const ledgerBytes =
      Number(await this.send("MEMORY", "USAGE", keys.items, "SAMPLES", "0")) +
      Number(await this.send("MEMORY", "USAGE", keys.outcomes, "SAMPLES", "0"));
    const finished = end.bytes / Math.max(1, end.finished);
    const perItem = this.samples.flatMap((x) => (x.inFlightBytes === null ? [] : [x.inFlightBytes])).sort((a, b) => a - b);
    const inFlight = perItem.length === 0 ? null : perItem[Math.floor(perItem.length / 2)]!;
    return {
      inFlight,
      finished,
      ledger: ledgerBytes / Math.max(1, end.finished),
      samples: perItem.length,
    };
  }
}
