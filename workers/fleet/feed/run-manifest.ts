/**
 * The run manifest, runs/<run>/manifest.json: written by the first submit of a run with its
 * settings and source, checked by every later one (the settings must be the same), and given
 * one entry per submit, opened when the submit starts and filled in when it ends.
 */
import type { SearchSettings } from "../../../shared/core/search/settings.ts";
import { UsageError } from "../../../shared/core/usage-error.ts";
import { manifestKey, type S3Store } from "../../../shared/io/storage/s3-store.ts";
import { RECORD_VERSION, RunManifestSchema, settingsDiff, type RunManifest } from "../protocol/index.ts";

type SubmitEntry = RunManifest["submits"][number];

/** How a submit ended, as its entry records it. */
export interface SubmitCounts {
  lines: number;
  enqueued: number;
  skipped: number;
  bad: number;
  interrupted: boolean;
}

export interface OpenedRun {
  /** First submit of this run name (false: a resumed or repeated submit). */
  created: boolean;
  /** Records how the submit ended. */
  finish(counts: SubmitCounts, finishedAt: number): Promise<void>;
}

/** Checks the settings against an earlier submit of the run and records this submit's start. */
export async function openRunManifest(
  store: S3Store,
  run: string,
  settings: SearchSettings,
  source: RunManifest["source"],
  startedAt: number,
): Promise<OpenedRun> {
  const key = manifestKey(run);
  const previous = await store.getJson(key, RunManifestSchema);
  if (previous) {
    const diff = settingsDiff(previous.settings, settings);
    if (diff.length > 0) {
      throw new UsageError(
        `run ${run} was submitted with other settings (${diff.join("; ")}); use a new run name or the same settings`,
      );
    }
  }
  const started = new Date(startedAt).toISOString();
  const manifest: RunManifest = previous ?? {
    kind: "run",
    version: RECORD_VERSION,
    run,
    createdAt: started,
    settings,
    source,
    submits: [],
  };
  const entry: SubmitEntry = {
    startedAt: started,
    finishedAt: null,
    lines: null,
    enqueued: null,
    skipped: null,
    bad: null,
    interrupted: null,
  };
  manifest.submits.push(entry);
  const at = manifest.submits.length - 1;
  await store.putJson(key, manifest);
  return {
    created: previous === undefined,
    async finish(counts, finishedAt) {
      Object.assign(entry, { finishedAt: new Date(finishedAt).toISOString(), ...counts });
      // Read again: the run's state may have been mirrored into it meanwhile (books/run-state.ts).
      const current = (await store.getJson(key, RunManifestSchema)) ?? manifest;
      current.submits[at] = entry;
      await store.putJson(key, current);
    },
  };
}
