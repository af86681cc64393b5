/**
 * `stagebeam dashboard`: one HTTP server with the runs page, the result viewer, bull-board at
 * /queues, the JSON API under /api, token-guarded actions, /healthz and /metrics. Everything it serves
 * comes from this process (the Content-Security-Policy forbids any other origin), so it works
 * where nothing can be downloaded.
 */
import type { Server } from "node:http";
import { fileURLToPath } from "node:url";
import express, { type ErrorRequestHandler } from "express";
import type { Logger } from "../../shared/io/logging.ts";
import { createRegistry } from "../../shared/io/metrics.ts";
import { actionsRouter } from "./actions.ts";
import { BULL_BOARD_PATH, bullBoardRouter } from "./bull-board.ts";
import { RequestError, type FleetSources } from "./fleet-data.ts";
import { html } from "./html.ts";
import { page } from "./layout.ts";
import { apiRouter, pagesRouter } from "./routes.ts";

const ASSETS = fileURLToPath(new URL("./assets/", import.meta.url));

/** Where the dashboard listens unless told otherwise: this machine only. */
export const LOOPBACK = "127.0.0.1";

/** Everything from this origin only; bull-board's link to Google's fonts is dropped from its page (bull-board.ts). */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "img-src 'self' data:",
  "style-src 'self' 'unsafe-inline'",
  "font-src 'self'",
  "script-src 'self'",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'self'",
  "form-action 'self'",
].join("; ");

export interface DashboardOptions {
  sources: FleetSources;
  port: number;
  host?: string;
  /** DASHBOARD_TOKEN; without it the dashboard is read-only. */
  token?: string;
  /** Items, and failure records, on one page of a run (default DEFAULT_PAGE_SIZE). */
  pageSize?: number;
  logger: Logger;
}

export interface Dashboard {
  url: string;
  port: number;
  close(): Promise<void>;
}

export function dashboardApp(o: Omit<DashboardOptions, "port" | "host">): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.use((_req, res, next) => {
    res.set({
      "Content-Security-Policy": CONTENT_SECURITY_POLICY,
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
    });
    next();
  });
  app.get("/healthz", (_req, res) => {
    res.json({ ok: true });
  });
  // The process series and stagebeam_build_info, scraped by the stagebeam-dashboard job.
  const registry = createRegistry();
  app.get("/metrics", async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });
  app.use("/assets", express.static(ASSETS, { fallthrough: false, maxAge: "1h" }));
  app.use("/api", actionsRouter(o.sources.queues, o.token));
  const paging = o.pageSize !== undefined ? { pageSize: o.pageSize } : {};
  app.use("/api", apiRouter(o.sources, paging));
  app.use(BULL_BOARD_PATH, bullBoardRouter(o.sources.queues));
  app.use(pagesRouter(o.sources, paging));
  app.use((req, _res, next) => next(new RequestError(`nothing at ${req.path}`)));
  const onError: ErrorRequestHandler = (err, req, res, _next) => {
    const known = err instanceof RequestError;
    const status = known ? err.status : typeof err?.status === "number" && err.status < 500 ? err.status : 500;
    const message = known || status < 500 ? String(err.message) : "internal error; see the dashboard's log";
    if (status >= 500)
      o.logger.error({ err: err instanceof Error ? err.message : String(err), path: req.path }, "request failed");
    if (req.path.startsWith("/api/") || !req.accepts("html")) {
      res.status(status).json({ error: message });
    } else {
      res
        .status(status)
        .type("html")
        .send(page(status === 404 ? "Not found" : "Error", html`<p class="error">${message}</p>`));
    }
  };
  app.use(onError);
  return app;
}

export async function startDashboard(o: DashboardOptions): Promise<Dashboard> {
  const app = dashboardApp(o);
  // Loopback unless the caller asks for more (`--host 0.0.0.0` in a container or a pod).
  const host = o.host ?? LOOPBACK;
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(o.port, host, (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : o.port;
  return {
    port,
    url: `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
