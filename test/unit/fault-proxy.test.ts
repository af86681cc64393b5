/**
 * The chaos suite's "done twice" counter: the fault proxy counts, per path, the PUTs sent and
 * the PUTs the server stored (a 2xx), so a refused conditional write or an unanswered PUT is
 * not counted as a write, a second stored write is, and so is one whose client went away
 * after sending it whole. Requests follow each other on one kept-alive connection, where a
 * scan of the bytes for request lines missed those that came right after a body.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFaultProxy, type FaultProxy } from "../chaos/fault-proxy.ts";

let server: http.Server;
let proxy: FaultProxy;
const stored = new Set<string>();

beforeAll(async () => {
  // Stores a path once: a PUT with If-None-Match: * of a stored path gets 412, as on AWS S3.
  server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.url === "/slow") return; // never answers
      if (req.url === "/late") return void setTimeout(() => res.writeHead(200).end(), 200);
      const refused = req.headers["if-none-match"] === "*" && stored.has(req.url!);
      if (!refused) stored.add(req.url!);
      res.writeHead(refused ? 412 : 200).end();
    });
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  proxy = await startFaultProxy({ host: "127.0.0.1", port: (server.address() as AddressInfo).port });
});

afterAll(async () => {
  await proxy.close();
  server.closeAllConnections();
  await new Promise((done) => server.close(done));
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function request(method: string, path: string, headers: Record<string, string> = {}, timeoutMs = 2_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: proxy.port, method, path, headers, agent }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode!));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(method === "PUT" ? '{"answer":"x"}' : undefined);
  });
}

describe("the fault proxy's write counts", () => {
  it("counts stored writes, not refused or unanswered ones", async () => {
    expect(await request("PUT", "/b/once", { "if-none-match": "*" })).toBe(200);
    expect(await request("HEAD", "/b/once")).toBe(200);
    expect(await request("PUT", "/b/once", { "if-none-match": "*" })).toBe(412);
    expect(await request("PUT", "/b/twice?x-id=PutObject")).toBe(200);
    expect(await request("GET", "/b/twice")).toBe(200);
    expect(await request("PUT", "/b/twice")).toBe(200);
    await expect(request("PUT", "/slow", {}, 300)).rejects.toThrow("timeout");
    // The client gave up, but its whole body had gone: the server stores it, and that counts.
    await expect(request("PUT", "/late", {}, 50)).rejects.toThrow("timeout");
    await new Promise((r) => setTimeout(r, 400));
    expect(proxy.puts.get("/b/once")).toEqual({ sent: 2, stored: 1 });
    expect(proxy.puts.get("/b/twice")).toEqual({ sent: 2, stored: 2 });
    expect(proxy.puts.get("/slow")).toEqual({ sent: 1, stored: 0 });
    expect(proxy.puts.get("/late")).toEqual({ sent: 1, stored: 1 });
  });
});
