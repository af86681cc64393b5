/** `/runs`: every run with its state, progress, rate, ETA and failures by reason, and the shared queues. */
import { QUEUE_STATES, type RunStatus } from "../../workers/fleet/ops/index.ts";
import { html } from "./html.ts";
import { page } from "./layout.ts";
import { runIsOver, SUMMARY_HEADINGS, summaryRow } from "./run-summary.ts";

export const REFRESH_SECONDS = 5;

export function runsPage(runs: readonly RunStatus[], queues: RunStatus["queues"]): string {
  const running = runs.some((s) => !runIsOver(s));
  const body = html`
<section>
${
  runs.length === 0
    ? html`<p class="muted">No runs yet: <code>stagebeam submit --run NAME --manifest FILE</code> creates one.</p>`
    : html`<table class="runs"><thead><tr>${SUMMARY_HEADINGS}</tr></thead><tbody>${runs.map(summaryRow)}</tbody></table>`
}
</section>
<section>
<h2>Queues <a class="small" href="/queues">(bull-board)</a></h2>
<p class="muted">Shared by every run.</p>
<table class="queues"><thead><tr><th>queue</th>${QUEUE_STATES.map((st) => html`<th>${st}</th>`)}</tr></thead>
<tbody>${Object.entries(queues).map(
    ([q, counts]) =>
      html`<tr data-queue="${q}"><td>${q}</td>${QUEUE_STATES.map((st) => html`<td class="num">${counts[st] ?? 0}</td>`)}</tr>`,
  )}</tbody></table>
</section>`;
  return page("Runs", body, running ? { refreshSeconds: REFRESH_SECONDS } : {});
}
