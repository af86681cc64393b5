/** A run's state, progress, rate, ETA and failures by reason, as the runs page and a run's page show them. */
import { formatDuration } from "../../shared/core/duration.ts";
import type { RunStatus } from "../../workers/fleet/ops/index.ts";
import { href, html, type Html } from "./html.ts";

/** The run's state in one word; the one place that names the states. */
export function runState(s: RunStatus): "done" | "running" | "queued" | "empty" {
  if (s.done) return "done";
  if (s.finished > 0) return "running";
  return s.counts.items > 0 ? "queued" : "empty";
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
<td><span class="state state-${state}">${state}</span></td>
<td><progress max="${Math.max(1, c.items)}" value="${s.finished}"></progress> <span class="count">${s.finished}/${c.items}</span></td>
<td class="num" data-field="completed">${c.completed}</td>
<td class="num" data-field="failed">${c.failed}</td>
<td class="num">${s.throughput !== null ? `${s.throughput.toFixed(2)} items/s` : "—"}</td>
<td class="num">${s.done ? "done" : s.etaSeconds !== null ? formatDuration(s.etaSeconds) : "—"}</td>
<td class="num">${s.accuracy ? `${s.accuracy.correct}/${s.accuracy.graded} = ${pct(s.accuracy.rate)}` : "—"}</td>
<td>${failuresByReason(s)}</td>
<td>${s.manifest?.createdAt ?? (c.createdAt !== null ? new Date(c.createdAt).toISOString() : "—")}</td>
</tr>`;
}
