/**
 * bull-board over the fleet's queues, always read-only: its UI cannot send the dashboard's
 * token, so its own buttons must not be a way around it (the token-guarded actions are in
 * actions.ts).
 */
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import type { Router } from "express";
import type { FleetQueues } from "../../workers/fleet/protocol/index.ts";

export const BULL_BOARD_PATH = "/queues";

export function bullBoardRouter(queues: FleetQueues): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  createBullBoard({
    queues: queues.all.map((q) => new BullMQAdapter(q, { readOnlyMode: true })),
    serverAdapter,
    options: { uiConfig: { boardTitle: "stagebeam queues" } },
  });
  return serverAdapter.getRouter() as Router;
}
