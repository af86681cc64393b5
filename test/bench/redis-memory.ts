/**
 * Redis memory by item state, for the README's "Sizing Redis": while a run goes, its Redis is
 * sampled (INFO memory less client buffers and the AOF buffer, so that MONITOR's output and the
 * AOF do not count) together with how many of its items are in flight and finished:
 *
 *   memory − memory before = F·in flight + D·finished      (once no item waits)
 *
 * `finished` is the end state's bytes an item (everything done, the queues idle): its ledger
 * entries (kept until the run expires after `export`) and its finished jobs, which BullMQ keeps
 * for a while (REQUEST_JOB_OPTIONS, CHILD_JOB_OPTIONS). `in flight` is then the median, over the
 * samples where nothing waited, of what the in-flight items held beyond that. A waiting item's
 * bytes are bench:submit's (a backlog of 100,000 and more, as a real one is; here the few
 * waiting items overlap too much with the running ones to be told apart).
 */
import { type FleetRedis, runKeys } from "../../workers/fleet/protocol/index.ts";

export interface MemorySample {
  bytes: number;
  waiting: number;
  inFlight: number;
  finished: number;
}

export interface MemoryPerItem {
  inFlight: number | null;
  finished: number;
  /** Of `finished`: the run ledger's entries (items and outcomes hashes, MEMORY USAGE). */
  ledger: number;
  samples: number;
}

/** Redis commands one sample sends (the bench takes them out of its command counts). */
const COMMANDS_PER_SAMPLE = 5;

const field = (info: string, name: string) => Number(new RegExp(`^${name}:(\\d+)`, "m").exec(info)?.[1] ?? 0);

/** Data memory: used_memory less what clients' buffers (MONITOR's output) and the AOF buffer hold. */
export async function dataBytes(client: FleetRedis): Promise<number> {
  const info = await client.info("memory");
  return field(info, "used_memory") - field(info, "mem_clients_normal") - field(info, "mem_aof_buffer");
}

export class MemorySampler {
  readonly samples: MemorySample[] = [];
  commands = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly client: FleetRedis,
    private readonly prefix: string,
    private readonly run: string,
    private readonly items: number,
    private readonly before: number,
  ) {}

  async sample(): Promise<MemorySample> {
    const q = `${this.prefix}:request`;
    const [bytes, waiting, active, children, counts] = await Promise.all([
      dataBytes(this.client),
      this.client.llen(`${q}:wait`),
      this.client.llen(`${q}:active`),
      this.client.zcard(`${q}:waiting-children`),
      this.client.hmget(runKeys(this.prefix, this.run).counts, "completed", "failed"),
    ]);
    this.commands += COMMANDS_PER_SAMPLE;
    const finished = Number(counts[0] ?? 0) + Number(counts[1] ?? 0);
    const s = { bytes: bytes - this.before, waiting, inFlight: Math.min(active + children, this.items - finished), finished };
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
      Number(await this.client.call("MEMORY", "USAGE", keys.items, "SAMPLES", "0")) +
      Number(await this.client.call("MEMORY", "USAGE", keys.outcomes, "SAMPLES", "0"));
    this.commands += 2;
    const finished = end.bytes / Math.max(1, end.finished);
    const median = (xs: number[]) => {
      if (xs.length === 0) return null;
      const sorted = [...xs].sort((a, b) => a - b);
      return sorted[Math.floor(sorted.length / 2)]!;
    };
    const inFlight = median(
      this.samples.filter((s) => s.waiting === 0 && s.inFlight > 0).map((s) => (s.bytes - s.finished * finished) / s.inFlight),
    );
    return { inFlight, finished, ledger: ledgerBytes / Math.max(1, end.finished), samples: this.samples.length };
  }
}
