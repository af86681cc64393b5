/**
 * A TCP proxy in front of a server (the embedded S3), for the chaos scenarios: `down()` drops
 * every open connection and refuses new ones until `up()`, as an outage does. It also counts
 * the HTTP PUTs that pass through it by path, so a scenario can tell soundly whether any object
 * was written twice: every worker's write goes through the proxy.
 */
import net from "node:net";

export interface FaultProxy {
  port: number;
  down(): void;
  up(): void;
  /** PUT request paths seen, with how often each. */
  puts: Map<string, number>;
  close(): Promise<void>;
}

const PUT_LINE = /(?:^|\r\n)PUT (\S+) HTTP\/1\.1\r\n/g;

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  let isDown = false;
  const open = new Set<net.Socket>();
  const puts = new Map<string, number>();
  const server = net.createServer((client) => {
    if (isDown) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    open.add(client);
    open.add(upstream);
    let head = "";
    client.on("data", (chunk: Buffer) => {
      // Request lines start a request; keep a short tail so a line split across chunks is still seen.
      head = (head + chunk.toString("latin1")).slice(-4096);
      for (const m of head.matchAll(PUT_LINE)) puts.set(m[1]!, (puts.get(m[1]!) ?? 0) + 1);
      head = head.slice(head.lastIndexOf("\r\n") + 2);
    });
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
