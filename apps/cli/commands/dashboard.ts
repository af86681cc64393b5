/**
 * `stagebeam dashboard`: the web dashboard on DASHBOARD_PORT — runs, the result viewer,
 * bull-board, /healthz — read-only unless DASHBOARD_TOKEN is set. Prints one JSON line once it
 * listens; SIGTERM or Ctrl-C stops it.
 */
import { Command } from "commander";
import { type ConfigPart, loadConfig } from "../../../shared/io/config.ts";
import { createLogger } from "../../../shared/io/logging.ts";
import { DEFAULT_PAGE_SIZE } from "../../dashboard/fleet-data.ts";
import { LOOPBACK, startDashboard } from "../../dashboard/server.ts";
import { intOption } from "./common.ts";
import { openFleet } from "./fleet-connection.ts";

/** What this command reads from the environment (also what a deployment must set for it). */
export const DASHBOARD_CONFIG_PARTS = ["redis", "s3", "dashboard", "logging"] as const satisfies readonly ConfigPart[];

export interface DashboardReady {
  event: "ready";
  url: string;
  port: number;
  actions: "enabled" | "disabled";
}

export const dashboardCommand = new Command("dashboard")
  .description("serve the web dashboard: runs, per-item result viewer with the candidate trees, bull-board, /healthz")
  .option("--port <n>", "port to listen on (default DASHBOARD_PORT)", intOption("--port", 0, 65535))
  .option("--host <address>", "address to listen on; 0.0.0.0 for every interface (a container, a pod)", LOOPBACK)
  .option(
    "--page-size <n>",
    "items, and failure records, on one page of a run (each page is one S3 listing)",
    intOption("--page-size", 1, 1000),
    DEFAULT_PAGE_SIZE,
  )
  .addHelpText(
    "after",
    "\nEnvironment: REDIS_URL, QUEUE_PREFIX, S3_*, DASHBOARD_PORT, DASHBOARD_TOKEN, LOG_LEVEL (see the README).\nWithout DASHBOARD_TOKEN the dashboard is read-only; with it, POST /api/queues/<queue>/retry and /clean\naccept `Authorization: Bearer <token>`.",
  )
  .action(async (o: { port?: number; host: string; pageSize: number }) => {
    const config = loadConfig(process.env, DASHBOARD_CONFIG_PARTS);
    const logger = createLogger({ name: "dashboard", level: config.logging.level });
    const fleet = openFleet(config);
    const dashboard = await startDashboard({
      sources: fleet,
      port: o.port ?? config.dashboard.port,
      host: o.host,
      pageSize: o.pageSize,
      logger,
      ...(config.dashboard.token !== undefined ? { token: config.dashboard.token } : {}),
    }).catch(async (err: unknown) => {
      await fleet.close();
      throw err;
    });
    const ready: DashboardReady = {
      event: "ready",
      url: dashboard.url,
      port: dashboard.port,
      actions: config.dashboard.token !== undefined ? "enabled" : "disabled",
    };
    process.stdout.write(`${JSON.stringify(ready)}\n`);
    await new Promise<void>((done) => {
      const stop = (why: string) => {
        logger.info({ why }, "stopping");
        void dashboard
          .close()
          .then(() => fleet.close())
          .finally(done);
      };
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
    });
  });
