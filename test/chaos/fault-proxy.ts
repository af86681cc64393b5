/**
 * A TCP proxy in front of a server (the embedded S3), for the chaos scenarios: `down()` drops
 * every open connection and refuses new ones until `up()`, as an outage does.
 *
 * It also watches the HTTP traffic, so a scenario can tell soundly whether any object was
 * written twice: every worker's write goes through it. For each path it counts the PUTs sent
 * and the PUTs the server answered with a 2xx, which are the writes that landed (s3rver
 * ignores If-None-Match, so a second conditional PUT overwrites and is answered 200 there).
 * Responses on a connection come in the order of its requests (HTTP/1.1, no pipelining
 * reordering), so each final status line is matched with the oldest unanswered request; 1xx
 * interim responses (100 Continue) are not final. A PUT whose connection was cut before its
 * answer (a killed worker, an outage) is sent but not counted as stored: the server may have
 * stored it, but then the retry finds the object (a HEAD) and does not PUT again, and if it
 * does PUT, that PUT is answered and counted.
 */
import net from "node:net";

export interface PutCounts {
  /** PUT requests seen for the path. */
  sent: number;
  /** Of those, how many the server answered with a 2xx (the object written). */
  stored: number;
}

export interface FaultProxy {
  port: number;
  down(): void;
  up(): void;
  puts: Map<string, PutCounts>;
  close(): Promise<void>;
}

const REQUEST_LINE = /(?:^|\r\n)([A-Z]+) (\S+) HTTP\/1\.1\r\n/g;
const STATUS_LINE = /(?:^|\r\n)HTTP\/1\.1 (\d{3}) /g;

/** Finds the lines `re` matches in a stream's chunks, however they are split. */
function lineScanner(re: RegExp, onMatch: (m: RegExpMatchArray) => void): (chunk: Buffer) => void {
  let head = "";
  return (chunk) => {
    // Keep a short tail so a line split across chunks is still seen, and each line seen once.
    head = (head + chunk.toString("latin1")).slice(-4096);
    for (const m of head.matchAll(re)) onMatch(m);
    head = head.slice(head.lastIndexOf("\r\n") + 2);
  };
}

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  let isDown = false;
  const open = new Set<net.Socket>();
  const puts = new Map<string, PutCounts>();
  const server = net.createServer((client) => {
    if (isDown) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    open.add(client);
    open.add(upstream);
    const pending: (PutCounts | null)[] = [];
    client.on(
      "data",
      lineScanner(REQUEST_LINE, (m) => {
        if (m[1] !== "PUT") return void pending.push(null);
        const counts = puts.get(m[2]!) ?? { sent: 0, stored: 0 };
        counts.sent++;
        puts.set(m[2]!, counts);
        pending.push(counts);
      }),
    );
    upstream.on(
      "data",
      lineScanner(STATUS_LINE, (m) => {
        const status = Number(m[1]);
        if (status < 200) return;
        const put = pending.shift();
        if (put && status < 300) put.stored++;
      }),
    );
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return {
    port: (server.address() as net.AddressInfo).port,
    puts,
    down() {
      isDown = true;
      for (const s of open) s.destroy();
    },
    up() {
      isDown = false;
    },
    close: () =>
      new Promise<void>((done) => {
        for (const s of open) s.destroy();
        server.close(() => done());
      }),
  };
}
