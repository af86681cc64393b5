/**
 * A worker whose Redis never answers exits with status 1 and says why, instead of waiting
 * forever (WORKER_REDIS_GIVE_UP_SECONDS); a real worker process on the bundled model, pointed at
 * a port where nothing listens.
 */
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { freePort } from "../../apps/demo/services/free-port.ts";
import { CLI_MAIN, REPO_ROOT } from "../../apps/demo/services/worker-processes.ts";

describe("a worker without Redis", () => {
  it("exits 1 once Redis has been silent for WORKER_REDIS_GIVE_UP_SECONDS, naming the setting and never the password", async () => {
    const [redisPort, s3Port] = [await freePort(), await freePort()];
    const password = "n0t/Sh0wn@All";
    const child = spawn(process.execPath, ["--import", "tsx", CLI_MAIN, "worker"], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH,
        REDIS_URL: `redis://:${encodeURIComponent(password)}@127.0.0.1:${redisPort}`,
        S3_ENDPOINT: `http://127.0.0.1:${s3Port}`,
        S3_BUCKET: "stagebeam",
        S3_ACCESS_KEY_ID: "S3RVER",
        S3_SECRET_ACCESS_KEY: "S3RVER",
        METRICS_PORT: "0",
        WORKER_REDIS_GIVE_UP_SECONDS: "2",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d) => (output += String(d)));
    child.stderr.on("data", (d) => (output += String(d)));
    const code = await new Promise<number | null>((done) => child.on("exit", (c) => done(c)));
    expect(code, output).toBe(1);
    expect(output).toMatch(/Redis has not answered for \d+ s \(WORKER_REDIS_GIVE_UP_SECONDS\); exiting/);
    for (const form of [password, encodeURIComponent(password)]) expect(output).not.toContain(form);
  }, 120_000);
});
