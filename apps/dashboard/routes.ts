/** The read-only routes: the pages, and the JSON API under /api that they are made from. */
import express, { type Router } from "express";
import {
  checkedItem,
  checkedRun,
  failuresOf,
  itemImage,
  itemRecord,
  queuesOverview,
  runDetail,
  runsOverview,
  type FleetSources,
} from "./fleet-data.ts";
import { itemPage } from "./item-page.ts";
import { runPage } from "./run-page.ts";
import { runsPage } from "./runs-page.ts";

export function apiRouter(src: FleetSources): Router {
  const router = express.Router();
  router.get("/runs", async (_req, res) => {
    const [runs, queues] = await Promise.all([runsOverview(src), queuesOverview(src)]);
    res.json({ runs, queues });
  });
  router.get("/runs/:run", async (req, res) => {
    res.json(await runDetail(src, req.params.run!));
  });
  router.get("/runs/:run/failures", async (req, res) => {
    res.json(await failuresOf(src, req.params.run!));
  });
  router.get("/runs/:run/items/:item", async (req, res) => {
    res.json(await itemRecord(src, req.params.run!, req.params.item!));
  });
  router.get("/runs/:run/items/:item/image", async (req, res) => {
    const { bytes, contentType } = await itemImage(src, req.params.run!, req.params.item!);
    // Content addressed: the bytes behind an item's image never change.
    res.type(contentType).set("Cache-Control", "private, max-age=86400, immutable").send(Buffer.from(bytes));
  });
  return router;
}

export function pagesRouter(src: FleetSources): Router {
  const router = express.Router();
  const send = (res: express.Response, text: string) => res.type("html").set("Cache-Control", "no-store").send(text);
  router.get("/", (_req, res) => res.redirect("/runs"));
  router.get("/runs", async (_req, res) => {
    const [runs, queues] = await Promise.all([runsOverview(src), queuesOverview(src)]);
    send(res, runsPage(runs, queues));
  });
  router.get("/runs/:run", async (req, res) => {
    send(res, runPage(await runDetail(src, checkedRun(req.params.run!))));
  });
  router.get("/runs/:run/items/:item", async (req, res) => {
    send(res, itemPage(await itemRecord(src, checkedRun(req.params.run!), checkedItem(req.params.item!))));
  });
  return router;
}
