/**
 * bull-board over the fleet's queues, always read-only: its UI cannot send the dashboard's
 * token, so its own buttons must not be a way around it (the token-guarded actions are in
 * actions.ts). Its page links web fonts from Google; that link is taken out of the page, so the
 * page asks nothing of another origin and falls back to the system fonts its stylesheet names.
 */
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import express, { type Router } from "express";
import type { FleetQueues } from "../../workers/fleet/protocol/index.ts";

export const BULL_BOARD_PATH = "/queues";

/** `<link … href="http(s)://…">` elements: stylesheets, fonts or preconnects on another origin. */
const REMOTE_LINK = /<link\b[^>]*\bhref="https?:\/\/[^"]*"[^>]*>\s*/gi;

/** bull-board's HTML without links to other origins; its JSON, scripts and styles pass as they are. */
export function withoutRemoteLinks(page: string): string {
  return page.replace(REMOTE_LINK, "");
}

export function bullBoardRouter(queues: FleetQueues): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  createBullBoard({
    queues: queues.all.map((q) => new BullMQAdapter(q, { readOnlyMode: true })),
    serverAdapter,
    options: { uiConfig: { boardTitle: "stagebeam queues" } },
  });
  const router = express.Router();
  router.use((_req, res, next) => {
    const send = res.send.bind(res);
    // bull-board renders its page with res.render, which ends in res.send of the HTML text.
    res.send = (body?: unknown) =>
      send(typeof body === "string" && /^\s*<!DOCTYPE html>/i.test(body) ? withoutRemoteLinks(body) : body);
    next();
  });
  router.use(serverAdapter.getRouter() as Router);
  return router;
}
