/**
 * An HTTP proxy in front of a server (the embedded S3), for the chaos scenarios: `down()`
 * drops every client connection and refuses new ones until `up()`, as an outage does.
 *
 * It also counts, for each path, the PUTs sent and the PUTs the server answered with a 2xx —
 * the writes that landed (s3rver ignores If-None-Match, so there a second conditional PUT
 * overwrites and is answered 200) — so a scenario can tell soundly whether an object was
 * written twice: every worker's write goes through it. Node's HTTP parser frames the
 * messages, so a request that follows another one's body on a kept-alive connection is seen.
 * A request whose body reached the proxy whole is carried to its answer even when its client
 * goes (a killed worker, an outage's dropped connection): the server may store it, and the
 * count must know. One cut off mid-body cannot be stored and is aborted.
 */
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

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
  /** By object path (the query left out). */
  puts: Map<string, PutCounts>;
  close(): Promise<void>;
}

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  let isDown = false;
  const clients = new Set<Socket>();
  const puts = new Map<string, PutCounts>();
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    let counts: PutCounts | undefined;
    if (req.method === "PUT") {
      const path = req.url!.split("?")[0]!; // the object, whatever the query (`?x-id=PutObject`)
      counts = puts.get(path) ?? { sent: 0, stored: 0 };
      counts.sent++;
      puts.set(path, counts);
    }
    const { expect: _continue, ...headers } = req.headers; // the proxy has answered 100-continue itself
    const upstream = http.request(
      { host: target.host, port: target.port, method: req.method, path: req.url, headers, agent },
      (answer) => {
        const status = answer.statusCode ?? 0;
        if (counts && status >= 200 && status < 300) counts.stored++;
        if (res.destroyed) return void answer.resume();
        res.writeHead(status, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
    req.on("close", () => {
      if (!req.complete) upstream.destroy();
    });
  });
  server.on("connection", (socket: Socket) => {
    if (isDown) return void socket.destroy();
    clients.add(socket);
    socket.on("close", () => clients.delete(socket));
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return {
    port: (server.address() as AddressInfo).port,
    puts,
    down() {
      isDown = true;
      for (const s of clients) s.destroy();
    },
    up() {
      isDown = false;
    },
    close: () =>
      new Promise<void>((done) => {
        for (const s of clients) s.destroy();
        agent.destroy();
        server.close(() => done());
      }),
  };
}
