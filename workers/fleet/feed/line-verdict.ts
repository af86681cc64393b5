/**
 * What the feeder does with one line of a chunk, decided without I/O from its de-duplication
 * (dedup.ts), the run's settings and whether local images can be read here: skip it (taken in
 * before), record it as a duplicate or a bad line (with the reason, the field and the input
 * kept in its failure record), or stage its image and enqueue it.
 */
import type { SearchSettings } from "../../../shared/core/search/settings.ts";
import type { ManifestEntry } from "../../../shared/io/manifest.ts";
import { isLocalImage } from "../../../shared/io/manifest.ts";
import { OPENAI_SETTING_FIELDS, type RunSettingsAsked } from "../../../shared/io/openai-batch.ts";
import { type FailureRecord, failureInput } from "../protocol/index.ts";
import type { BadLine } from "./bad-lines.ts";
import { duplicateLineKey, type SortedLine } from "./dedup.ts";

export type GoodEntry = Extract<ManifestEntry, { ok: true }>;

export type LineVerdict =
  | { kind: "skipped" }
  | { kind: "duplicate"; bad: BadLine; input: FailureRecord["input"]; firstLine: number }
  | { kind: "bad"; bad: BadLine; input: FailureRecord["input"] }
  | { kind: "fresh"; entry: GoodEntry; key: string; wasBad: boolean };

const NO_INPUT: FailureRecord["input"] = { image: null, question: null, answer: null };
/** A line's input for its failure record, with its own settings and system message (what `retry` enqueues again). */
const inputOf = (e: GoodEntry): FailureRecord["input"] => failureInput({ ...e.item, answer: e.item.answer ?? null });

/** A line asking for other run settings than the run's: which field, and the two values. */
function settingsMismatch(line: RunSettingsAsked | undefined, run: SearchSettings) {
  for (const [k, v] of Object.entries(line ?? {}) as [keyof RunSettingsAsked, unknown][]) {
    if (run[k] !== v) return { field: OPENAI_SETTING_FIELDS[k], got: v, expected: run[k] };
  }
  return null;
}

export function lineVerdict(sorted: SortedLine, settings: SearchSettings, localImages: boolean): LineVerdict {
  const { entry: e, key } = sorted;
  const id = e.ok ? e.item.id : (e.id ?? null);
  if (sorted.kind === "skipped") return { kind: "skipped" };
  if (sorted.kind === "duplicate") {
    // Recorded under a key of its own (the id's key is the first line's item), so the line
    // has a failure record and counts in the run's failures by reason.
    return {
      kind: "duplicate",
      bad: {
        line: e.line,
        id,
        item: duplicateLineKey(e.line),
        reason: "duplicate-id",
        field: "id",
        message: `id ${JSON.stringify(id ?? key)} is already used by line ${sorted.firstLine}; expected an id unique within the run`,
      },
      input: e.ok ? inputOf(e) : NO_INPUT,
      firstLine: sorted.firstLine,
    };
  }
  if (!e.ok) {
    const reason = `manifest-${e.field.split(/[.[]/)[0]}`;
    return { kind: "bad", bad: { line: e.line, id, item: key, reason, field: e.field, message: e.message }, input: NO_INPUT };
  }
  const mismatch = settingsMismatch(e.item.asks, settings);
  const who = `line ${e.line}, item ${JSON.stringify(e.item.id)}`;
  const refused = (reason: string, field: string, message: string): LineVerdict => ({
    kind: "bad",
    bad: { line: e.line, id: e.item.id, item: key, reason, field, message: `${who}, field "${field}": ${message}` },
    input: inputOf(e),
  });
  if (mismatch) {
    return refused(
      "manifest-settings",
      mismatch.field,
      `got ${JSON.stringify(mismatch.got)}; expected ${JSON.stringify(mismatch.expected)}, the run's setting (a run has one search: submit other strategies, beams or judges as another run)`,
    );
  }
  if (isLocalImage(e.item.image) && !localImages) {
    return refused(
      "manifest-image",
      "image",
      `got the local path ${JSON.stringify(e.item.image)}; expected s3://bucket/key or a data: URL (a detached run is fed in the fleet, which cannot read this machine's files; submit without --detach)`,
    );
  }
  return { kind: "fresh", entry: e, key, wasBad: sorted.wasBad };
}
