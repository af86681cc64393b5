/**
 * S3 unreachable mid-run: the proxy drops every connection and refuses new ones for the
 * outage, then lets them through again. Children, steps and the result writes must ride it
 * out (WORKER_RETRY_BUDGET_SECONDS, 600 by default): every item completes, once.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { say, type FaultScenario } from "../chaos-kit.ts";

export function s3Outage(seconds: number): FaultScenario {
  const label = seconds >= 60 ? `${seconds / 60} min` : `${seconds} s`;
  return {
    name: `s3-outage-${seconds}s`,
    title: `S3 unreachable for ${label}`,
    items: 60,
    async fault({ env, run }) {
      env.proxy.down();
      say(`${run}: S3 down (${(await env.fleet.ledger.counts(run)).completed} items done)`);
      await sleep(seconds * 1000);
      env.proxy.up();
      say(`${run}: S3 back after ${label}`);
      return [`S3 down for ${label}`];
    },
  };
}
