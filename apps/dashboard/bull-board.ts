/**
 * bull-board over the fleet's queues, always read-only: its UI cannot send the dashboard's
 * token, so its own buttons must not be a way around it (the token-guarded actions are in
 * actions.ts).
 */
import { createBullBoard } from "@bull-board/api";
import type { IServerAdapter } from "@bull-board/api/typings/app";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import type { Router } from "express";
import type { FleetQueues } from "../../workers/fleet/protocol.ts";

export const BULL_BOARD_PATH = "/queues";

export function bullBoardRouter(queues: FleetQueues): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  createBullBoard({
    queues: queues.all.map((q) => new BullMQAdapter(q, { readOnlyMode: true })),
    // @bull-board/express 9.10.1 brings its own @bull-board/api 9.10.1, whose types differ from
    // the 9.10.2 we depend on only in private fields; the adapter's interface is the same.
    serverAdapter: serverAdapter as unknown as IServerAdapter,
    options: { uiConfig: { boardTitle: "stagebeam queues" } },
  });
  return serverAdapter.getRouter() as Router;
}
