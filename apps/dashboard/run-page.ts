/**
 * `/runs/<run>`: the run's summary and settings, a page of its items with their outcomes and a
 * page of its failure records with their reasons, each paged from S3 by a cursor (the last item
 * key shown), and a search by id.
 */
import type { Outcome } from "../../workers/fleet/books/index.ts";
import type { FailureRecord } from "../../workers/fleet/protocol/index.ts";
import type { PageCursor, RunDetail } from "./fleet-data.ts";
import { href, html, type Html } from "./html.ts";
import { page } from "./layout.ts";
import { REFRESH_SECONDS } from "./runs-page.ts";
import { runIsOver, SUMMARY_HEADINGS, summaryRow } from "./run-summary.ts";

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

/** The run page's URL for a cursor: the search and the other list's position are kept. */
function pageHref(run: string, cursor: PageCursor): string {
  const q = new URLSearchParams();
  if (cursor.prefix !== undefined) q.set("prefix", cursor.prefix);
  if (cursor.after !== undefined) q.set("after", cursor.after);
  if (cursor.failuresAfter !== undefined) q.set("failuresAfter", cursor.failuresAfter);
  const query = q.toString();
  return `${href("runs", run)}${query ? `?${query}` : ""}`;
}

/** "first page" and "next page" links of one list; the other list stays where it is. */
function pager(run: string, cursor: PageCursor, which: "after" | "failuresAfter", next: string | null): Html {
  const { [which]: at, ...rest } = cursor;
  if (at === undefined && next === null) return html``;
  return html`<nav class="pager" data-list="${which}">${at !== undefined ? html`<a class="first" href="${pageHref(run, rest)}">first page</a>` : ""}${next !== null ? html`<a class="next" href="${pageHref(run, { ...rest, [which]: next })}">next page</a>` : ""}</nav>`;
}

export function runPage(d: RunDetail, notice?: string): string {
  const s = d.status;
  const set = s.manifest?.settings;
  const { cursor, results, failures } = d;
  const where = cursor.prefix !== undefined ? html` whose id starts with <code>${cursor.prefix}</code>` : "";
  const body = html`
<table class="runs"><thead><tr>${SUMMARY_HEADINGS}</tr></thead><tbody>${summaryRow(s)}</tbody></table>
${
  set
    ? html`<p class="settings">strategy <b>${set.strategy}</b> · beam <b>${set.beam}</b> · judge <b>${set.judgeMode}</b> · seed <b>${set.seed}</b> · max stage tokens <b>${set.maxStageTokens}</b> · ${s.counts.tokens} tokens generated</p>`
    : html`<p class="muted">No run manifest in S3.</p>`
}
<form class="search" method="get" action="${href("runs", s.run)}"><label>Find an item by id <input type="search" name="q" value="${cursor.prefix ?? ""}" placeholder="an id, or the start of one"></label> <button type="submit">Find</button>${cursor.prefix !== undefined ? html` <a href="${href("runs", s.run)}">all items</a>` : ""}</form>
${notice !== undefined ? html`<p class="notice">${notice}</p>` : ""}
<section>
<h2>Results${where}</h2>
${
  results.rows.length === 0
    ? html`<p class="muted">No results${cursor.after !== undefined ? " after this point" : cursor.prefix !== undefined ? "" : " yet"}.</p>`
    : html`<ul class="items">${results.rows.map(
        (r) =>
          html`<li data-item="${r.item}"><a href="${href("runs", s.run, "items", r.item)}">${r.item}</a> <span class="outcome outcome-${r.outcome?.[0] ?? "none"}">${outcomeText(r.outcome)}</span></li>`,
      )}</ul>`
}
${pager(s.run, cursor, "after", results.next)}
</section>
<section>
<h2>Failures${where}</h2>
${failuresTable(s.run, failures.rows)}
${pager(s.run, cursor, "failuresAfter", failures.next)}
</section>`;
  return page(`Run ${s.run}`, body, runIsOver(s) ? {} : { refreshSeconds: REFRESH_SECONDS });
}
