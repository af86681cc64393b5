/**
 * The roles a deployment runs from the one image, and the configuration parts each reads, for
 * the tests that check infra/compose.yaml and infra/k8s against the config schema.
 */
import type { ConfigPart } from "../../shared/io/config.ts";
import { DASHBOARD_CONFIG_PARTS } from "../../apps/cli/commands/dashboard.ts";
import { EXPORTER_CONFIG_PARTS } from "../../apps/cli/commands/exporter.ts";
import { SUBMIT_CONFIG_PARTS } from "../../apps/cli/commands/submit.ts";
import { WORKER_CONFIG_PARTS } from "../../apps/cli/commands/worker.ts";

export const ROLE_CONFIG_PARTS: Record<string, readonly ConfigPart[]> = {
  worker: WORKER_CONFIG_PARTS,
  submit: SUBMIT_CONFIG_PARTS,
  exporter: EXPORTER_CONFIG_PARTS,
  dashboard: DASHBOARD_CONFIG_PARTS,
};

/**
 * Variables no manifest sets, each with the reason; every other variable of the schema must
 * be set (possibly empty, which counts as unset) in each deployment's shared settings.
 */
export const LEFT_OUT: Record<string, string> = {
  STAGEBEAM_STOP_ON_STDIN_EOF:
    "for a supervisor that holds the worker's stdin (stagebeam demo); containers are stopped by SIGTERM",
  AWS_ACCESS_KEY_ID: "the AWS SDK reads it on its own; a deployment's static keys go in S3_ACCESS_KEY_ID",
  AWS_SECRET_ACCESS_KEY: "the AWS SDK reads it on its own; a deployment's static keys go in S3_SECRET_ACCESS_KEY",
};
