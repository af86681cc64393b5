/**
 * The dashboard's only writes, each a POST that needs `Authorization: Bearer <DASHBOARD_TOKEN>`:
 * retry a failed job, clean finished jobs of a queue. Without a configured token every action is
 * refused (403); a missing or wrong token is 401.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import express, { type RequestHandler, type Router } from "express";
import { z } from "zod";
import type { FleetQueues } from "../../workers/fleet/protocol/index.ts";
import { RequestError } from "./fleet-data.ts";

const digest = (text: string) => createHash("sha256").update(text, "utf8").digest();

/** Passes a request on only with the right bearer token; compares digests in constant time. */
export function requireToken(token: string | undefined): RequestHandler {
  const expected = token === undefined ? undefined : digest(token);
  return (req, res, next) => {
    if (expected === undefined) {
      res.status(403).json({ error: "actions are disabled: the dashboard runs without DASHBOARD_TOKEN, read-only" });
      return;
    }
    const given = /^Bearer (\S+)$/.exec(req.get("authorization") ?? "")?.[1];
    if (given === undefined || !timingSafeEqual(digest(given), expected)) {
      res
        .status(401)
        .set("WWW-Authenticate", "Bearer")
        .json({ error: "this action needs Authorization: Bearer <DASHBOARD_TOKEN>" });
      return;
    }
    next();
  };
}

const RetryBodySchema = z.strictObject({ job: z.string().min(1).max(512) });
const CleanBodySchema = z.strictObject({
  state: z.enum(["completed", "failed"]),
  /** Only jobs that finished at least this long ago. */
  graceSeconds: z.number().nonnegative().default(0),
  limit: z.number().int().positive().max(100_000).default(10_000),
});

function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const r = schema.safeParse(body ?? {});
  if (r.success) return r.data;
  throw new RequestError(
    `bad request body: ${r.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; ")}`,
    400,
  );
}

export function actionsRouter(queues: FleetQueues, token: string | undefined): Router {
  const router = express.Router();
  const guard = requireToken(token);
  const body = express.json({ limit: "4kb" });
  const queueNamed = (name: string) => {
    const q = queues.all.find((x) => x.name === name);
    if (q === undefined)
      throw new RequestError(
        `no queue named ${JSON.stringify(name)}; the queues are ${queues.all.map((x) => x.name).join(", ")}`,
      );
    return q;
  };

  router.post("/queues/:queue/retry", guard, body, async (req, res) => {
    const queue = queueNamed(String(req.params.queue));
    const { job: id } = parseBody(RetryBodySchema, req.body);
    const job = await queue.getJob(id);
    if (!job) throw new RequestError(`queue ${queue.name} has no job ${JSON.stringify(id)}`);
    const state = await job.getState();
    if (state !== "failed") {
      res.status(409).json({ error: `job ${id} is ${state}; only a failed job can be retried` });
      return;
    }
    await job.retry("failed");
    res.json({ queue: queue.name, job: id, retried: true });
  });

  router.post("/queues/:queue/clean", guard, body, async (req, res) => {
    const queue = queueNamed(String(req.params.queue));
    const { state, graceSeconds, limit } = parseBody(CleanBodySchema, req.body);
    const removed = await queue.clean(Math.round(graceSeconds * 1000), limit, state);
    res.json({ queue: queue.name, state, removed: removed.length });
  });
  return router;
}
