/** The read-only routes: the pages, and the JSON API under /api that they are made from. */
import express, { type Router } from "express";
import {
  checkedCursor,
  checkedItem,
  checkedRun,
  DEFAULT_PAGE_SIZE,
  failuresPage,
  findItem,
  itemImage,
  itemRecord,
  queuesOverview,
  resultsPage,
  runDetail,
  runsOverview,
  type FleetSources,
} from "./fleet-data.ts";
import { href } from "./html.ts";
import { itemPage } from "./item-page.ts";
import { runPage } from "./run-page.ts";
import { runsPage } from "./runs-page.ts";

/** Items and failure records a page (one S3 listing each). */
export interface PageOptions {
  pageSize?: number;
}

export function apiRouter(src: FleetSources, { pageSize = DEFAULT_PAGE_SIZE }: PageOptions = {}): Router {
  const router = express.Router();
  router.get("/runs", async (_req, res) => {
    const [runs, queues] = await Promise.all([runsOverview(src), queuesOverview(src)]);
    res.json({ runs, queues });
  });
  router.get("/runs/:run", async (req, res) => {
    res.json(await runDetail(src, req.params.run!, checkedCursor(req.query), pageSize));
  });
  // ?after=<item key>&prefix=<start of a key>: one page, and `next` to ask for the one after it.
  router.get("/runs/:run/items", async (req, res) => {
    res.json(await resultsPage(src, req.params.run!, checkedCursor(req.query), pageSize));
  });
  router.get("/runs/:run/failures", async (req, res) => {
    res.json(await failuresPage(src, req.params.run!, checkedCursor(req.query), pageSize));
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

export function pagesRouter(src: FleetSources, { pageSize = DEFAULT_PAGE_SIZE }: PageOptions = {}): Router {
  const router = express.Router();
  const send = (res: express.Response, text: string) => res.type("html").set("Cache-Control", "no-store").send(text);
  router.get("/", (_req, res) => res.redirect("/runs"));
  router.get("/runs", async (_req, res) => {
    const [runs, queues] = await Promise.all([runsOverview(src), queuesOverview(src)]);
    send(res, runsPage(runs, queues));
  });
  router.get("/runs/:run", async (req, res) => {
    const run = checkedRun(req.params.run!);
    const q = typeof req.query.q === "string" ? req.query.q.trim() : "";
    if (q === "") {
      send(res, runPage(await runDetail(src, run, checkedCursor(req.query), pageSize)));
      return;
    }
    // A search: the item it names, else the items whose key starts with it.
    const item = await findItem(src, run, q);
    if (item !== null) {
      res.redirect(href("runs", run, "items", item));
      return;
    }
    const prefix = q.replace(/[^A-Za-z0-9_~-]+/g, "_").slice(0, 120);
    send(
      res,
      runPage(
        await runDetail(src, run, { prefix }, pageSize),
        `No item has the id ${JSON.stringify(q)}; these are the items whose id starts with ${JSON.stringify(prefix)}.`,
      ),
    );
  });
  router.get("/runs/:run/items/:item", async (req, res) => {
    send(res, itemPage(await itemRecord(src, checkedRun(req.params.run!), checkedItem(req.params.item!))));
  });
  return router;
}
