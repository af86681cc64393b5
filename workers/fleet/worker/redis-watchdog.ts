/**
 * A worker whose Redis never answers must not wait forever: BullMQ and ioredis reconnect
 * without end, which is right for an outage of seconds or minutes but hides a wrong URL, a
 * deleted instance or a network policy. The watchdog pings Redis on its own connection and
 * calls `onGiveUp` once no ping has succeeded for `giveUpMs`; the worker then exits non-zero,
 * and its supervisor (Kubernetes, compose) reports and restarts it.
 */
import { Redis } from "ioredis";

export interface RedisWatchdog {
  close(): void;
}

export function watchRedis(
  url: string,
  opts: { giveUpMs: number; intervalMs?: number; onGiveUp: (silentMs: number) => void },
): RedisWatchdog {
  const interval = opts.intervalMs ?? Math.min(5_000, Math.max(250, opts.giveUpMs / 4));
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: interval,
    retryStrategy: () => interval,
  });
  // Connection errors are what the watchdog measures; ioredis must not print them itself.
  client.on("error", () => {});
  client.connect().catch(() => {});
  let lastAnswer = Date.now();
  let done = false;
  const timer = setInterval(() => {
    client.ping().then(
      () => {
        lastAnswer = Date.now();
      },
      () => {},
    );
    const silent = Date.now() - lastAnswer;
    if (!done && silent >= opts.giveUpMs) {
      done = true;
      opts.onGiveUp(silent);
    }
  }, interval);
  timer.unref();
  return {
    close() {
      done = true;
      clearInterval(timer);
      client.disconnect();
    },
  };
}
