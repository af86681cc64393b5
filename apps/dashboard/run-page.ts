/** `/runs/<run>`: the run's summary and settings, its items with their outcomes, its failure records with their reasons. */
import type { Outcome } from "../../workers/fleet/books/index.ts";
import type { FailureRecord } from "../../workers/fleet/protocol/index.ts";
import type { RunDetail } from "./fleet-data.ts";
import { href, html, type Html } from "./html.ts";
import { page } from "./layout.ts";
import { REFRESH_SECONDS } from "./runs-page.ts";
import { runState, SUMMARY_HEADINGS, summaryRow } from "./run-summary.ts";

const OUTCOMES: Record<string, string> = { c: "correct", w: "wrong", d: "done" };

function outcomeText(o: Outcome | null): string {
  if (o === null) return "—";
  return OUTCOMES[o] ?? `failed: ${o.slice(2)}`;
}

export function failuresTable(run: string, failures: readonly FailureRecord[]): Html {
  if (failures.length === 0) return html`<p class="muted">No failures.</p>`;
  return html`<table class="failures"><thead><tr><th>item</th><th>line</th><th>where</th><th>reason</th><th>field</th><th>message</th></tr></thead><tbody>
${failures.map(
  (f) => html`<tr data-item="${f.item}">
<td><a href="${href("runs", run, "items", f.item)}">${f.id ?? f.item}</a></td>
<td class="num">${f.line ?? "—"}</td>
<td>${f.stage}</td>
<td><code class="reason">${f.reason}</code></td>
<td>${f.field ?? "—"}</td>
<td class="message">${f.message}</td>
</tr>`,
)}</tbody></table>`;
}

export function runPage(d: RunDetail): string {
  const s = d.status;
  const set = s.manifest?.settings;
  const body = html`
<table class="runs"><thead><tr>${SUMMARY_HEADINGS}</tr></thead><tbody>${summaryRow(s)}</tbody></table>
${
  set
    ? html`<p class="settings">strategy <b>${set.strategy}</b> · beam <b>${set.beam}</b> · judge <b>${set.judgeMode}</b> · seed <b>${set.seed}</b> · max stage tokens <b>${set.maxStageTokens}</b> · ${s.counts.tokens} tokens generated</p>`
    : html`<p class="muted">No run manifest in S3.</p>`
}
<section>
<h2>Results (${d.results.length}${d.moreResults ? "+" : ""})</h2>
${
  d.results.length === 0
    ? html`<p class="muted">No results yet.</p>`
    : html`<ul class="items">${d.results.map(
        (r) =>
          html`<li data-item="${r.item}"><a href="${href("runs", s.run, "items", r.item)}">${r.item}</a> <span class="outcome outcome-${r.outcome?.[0] ?? "none"}">${outcomeText(r.outcome)}</span></li>`,
      )}</ul>`
}
${d.moreResults ? html`<p class="muted">Only the first ${d.results.length} are listed; <code>stagebeam results --run ${s.run}</code> streams them all.</p>` : ""}
</section>
<section>
<h2>Failures (${d.failures.length}${d.moreFailures ? "+" : ""})</h2>
${failuresTable(s.run, d.failures)}
</section>`;
  return page(`Run ${s.run}`, body, runState(s) !== "done" ? { refreshSeconds: REFRESH_SECONDS } : {});
}
