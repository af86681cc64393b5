import type { Command } from "commander";

/**
 * Each subcommand's module, imported only when that subcommand runs, so that `ask` and `eval`
 * (and `model`) load no BullMQ or Redis client; all of them for the overall help or an unknown command, none
 * for --version.
 */
export const SUBCOMMANDS = new Map<string, () => Promise<Command>>([
  ["ask", async () => (await import("./commands/ask.ts")).askCommand],
  ["eval", async () => (await import("./commands/eval.ts")).evalCommand],
  ["scenes", async () => (await import("./commands/scenes.ts")).scenesCommand],
  ["worker", async () => (await import("./commands/worker.ts")).workerCommand],
  ["submit", async () => (await import("./commands/submit.ts")).submitCommand],
  ["status", async () => (await import("./commands/status.ts")).statusCommand],
  ["results", async () => (await import("./commands/results.ts")).resultsCommand],
  ["runs", async () => (await import("./commands/runs.ts")).runsCommand],
  ["cancel", async () => (await import("./commands/cancel.ts")).cancelCommand],
  ["retry", async () => (await import("./commands/retry.ts")).retryCommand],
  ["export", async () => (await import("./commands/export.ts")).exportCommand],
  ["demo", async () => (await import("./commands/demo.ts")).demoCommand],
  ["model", async () => (await import("./commands/model.ts")).modelCommand],
  ["dashboard", async () => (await import("./commands/dashboard.ts")).dashboardCommand],
  ["exporter", async () => (await import("./commands/exporter.ts")).exporterCommand],
]);
