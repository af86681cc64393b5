/** A run's state, progress, rate, ETA and failures by reason, as the runs page and a run's page show them. */
import { formatDuration } from "../../shared/core/duration.ts";
import type { RunStatus } from "../../workers/fleet/ops/index.ts";
import { href, html, type Html } from "./html.ts";

/**
 * A run's state as `stagebeam status` and `runs` report it (the run's state in Redis, else the
 * one mirrored to its S3 manifest), with a finished run that has failures told apart: the one
 * place that names the states. Runs from before run states were recorded fall back to counts.
 */
export const RUN_STATE_LABELS = [
  "validating",
  "in progress",
  "queued",
  "submit stopped",
  "completed",
  "completed with failures",
  "cancelled",
  "failed",
  "empty",
] as const;
export type RunStateLabel = (typeof RUN_STATE_LABELS)[number];

export function runState(s: RunStatus): RunStateLabel {
  const recorded = s.meta?.state ?? s.manifest?.state;
  if (recorded === "cancelled" || recorded === "failed") return recorded;
  if (s.done || recorded === "completed") return s.counts.failed > 0 ? "completed with failures" : "completed";
  // The manifest was not fed to its end and nobody feeds it: `stagebeam status` says how to resume.
  if (s.feeder === "stopped") return "submit stopped";
  if (recorded === "validating") return "validating";
  if (recorded === "in_progress" || s.finished > 0) return "in progress";
  return s.counts.items > 0 ? "queued" : "empty";
}

/** Whether the run can still change (its page refreshes itself while so). */
export function runIsOver(s: RunStatus): boolean {
  const state = runState(s);
  return state === "completed" || state === "completed with failures" || state === "cancelled" || state === "failed";
}

/** The CSS class of a state: `state-completed-with-failures`. */
const stateClass = (state: RunStateLabel) => `state state-${state.replaceAll(" ", "-")}`;

/**
 * Progress as two shares of one bar, completed and failed, so a run whose items all failed is
 * not a full bar of success.
 */
function progressBar(s: RunStatus): Html {
  const total = Math.max(1, s.counts.items);
  const share = (n: number) => `${((100 * n) / total).toFixed(2)}%`;
  return html`<span class="bar" title="${s.counts.completed} completed, ${s.counts.failed} failed, ${s.pending} pending"><span class="bar-completed" style="width:${share(s.counts.completed)}"></span><span class="bar-failed" style="width:${share(s.counts.failed)}"></span></span>`;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export function failuresByReason(s: RunStatus): Html {
  const reasons = Object.entries(s.counts.failedByReason).sort((a, b) => b[1] - a[1]);
  if (reasons.length === 0) return html`<span class="muted">none</span>`;
  return html`<ul class="reasons">${reasons.map(([reason, n]) => html`<li><code>${reason}</code> ${n}</li>`)}</ul>`;
}

export const SUMMARY_HEADINGS = html`<th>run</th><th>state</th><th>progress</th><th>completed</th><th>failed</th><th>rate</th><th>ETA</th><th>accuracy</th><th>failures by reason</th><th>created</th>`;

/** One run as a table row under SUMMARY_HEADINGS. */
export function summaryRow(s: RunStatus): Html {
  const c = s.counts;
  const state = runState(s);
  return html`<tr data-run="${s.run}">
<td><a href="${href("runs", s.run)}">${s.run}</a></td>
<td><span class="${stateClass(state)}">${state}</span></td>
<td>${progressBar(s)} <span class="count">${s.finished}/${c.items}</span></td>
<td class="num" data-field="completed">${c.completed}</td>
<td class="num" data-field="failed">${c.failed}</td>
<td class="num">${s.throughput !== null ? `${s.throughput.toFixed(2)} items/s` : "—"}</td>
<td class="num">${runIsOver(s) ? "—" : s.etaSeconds !== null ? formatDuration(s.etaSeconds) : "—"}</td>
<td class="num">${s.accuracy ? `${s.accuracy.correct}/${s.accuracy.graded} = ${pct(s.accuracy.rate)}` : "—"}</td>
<td>${failuresByReason(s)}</td>
<td>${s.manifest?.createdAt ?? (c.createdAt !== null ? new Date(c.createdAt).toISOString() : "—")}</td>
</tr>`;
}
