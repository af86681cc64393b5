/**
 * `/runs/<run>/items/<item>`: the result viewer. The image, the question and answer, the four
 * chosen stages, and per step every candidate with its check and verifier score, the knock-out
 * tree with each verdict and the winner's path (or the verifier's ranking, or a vote's answers);
 * for a failed item its failure record.
 */
import type { FailureRecord, ResultRecord } from "../../workers/fleet/protocol/index.ts";
import { href, html, type Html } from "./html.ts";
import { page } from "./layout.ts";
import { searchView, type BracketNode, type CandidateView, type StepView } from "./search-view.ts";

const imageOf = (r: { run: string; item: string }) =>
  html`<img class="item-image" src="${href("api", "runs", r.run, "items", r.item, "image")}" alt="image of item ${r.item}">`;

function candidateRow(c: CandidateView): Html {
  const marks = [
    c.winner ? html`<span class="mark winner">winner</span>` : "",
    c.entered ? "" : html`<span class="mark out">kept out</span>`,
    c.defect ? html`<span class="mark defect">${c.defect}</span>` : "",
  ];
  return html`<tr class="candidate${c.winner ? " winner" : ""}" data-candidate="${c.index}">
<td>c${c.index}</td>
<td class="text">${c.text}</td>
<td class="num">${c.tokens}</td>
<td>${c.check ? html`<span class="check check-${c.check.verdict}">${c.check.verdict}</span>${c.check.detail ? html` <span class="detail">${c.check.detail}</span>` : ""}` : "—"}</td>
<td class="num">${c.score ? html`<span class="score">${c.score.value.toFixed(3)}</span> <span class="detail">steps ${c.score.steps.map((x) => x.toFixed(2)).join(" · ")}</span>` : "—"}</td>
<td>${marks}</td>
</tr>`;
}

function verdictText(n: Extract<BracketNode, { kind: "match" }>): string {
  return n.reason === "judge" ? `judge chose ${n.verdict === 1 ? "first" : "second"}` : `walkover (${n.reason})`;
}

function bracketNode(n: BracketNode): Html {
  if (n.kind === "candidate") {
    return html`<li class="leaf${n.onWinnerPath ? " on-path" : ""}" data-candidate="${n.candidate}"><span class="node">c${n.candidate}</span></li>`;
  }
  return html`<li class="match${n.onWinnerPath ? " on-path" : ""}" data-round="${n.round}" data-first="${n.first}" data-second="${n.second}" data-verdict="${n.verdict}" data-winner="${n.winner}">
<span class="node">round ${n.round}: c${n.first} v c${n.second} → <b>c${n.winner}</b> <span class="verdict">verdict ${n.verdict}, ${verdictText(n)}</span>${n.detail ? html` <span class="detail">${n.detail}</span>` : ""}</span>
<ul>${n.children.map(bracketNode)}</ul>
</li>`;
}

function stepSection(s: StepView): Html {
  const path =
    s.winnerPath.length === 0
      ? html`<span class="muted">no match needed</span>`
      : s.winnerPath.map(
          (m, i) =>
            html`${i > 0 ? " → " : ""}<span class="hop">beat c${m.winner === m.first ? m.second : m.first} in round ${m.round}</span>`,
        );
  const chosen = s.bracket
    ? html`<div class="bracket"><h4>Knock-out</h4><ul class="tree">${bracketNode(s.bracket)}</ul></div>
<p class="winner-path">Winner's path: c${s.winner} ${path}</p>`
    : "";
  const ranking =
    s.ranking.length > 0 ? html`<p class="ranking">Verifier's ranking: ${s.ranking.map((c) => `c${c}`).join(" > ")}</p>` : "";
  const votes =
    s.votes.length > 0
      ? html`<div class="votes"><h4>Votes</h4><ul>${s.votes.map(
          (v) =>
            html`<li data-answer="${v.answer}"><b>${v.answer}</b>: weight ${v.weight.toFixed(3)} from ${v.candidates.map((c) => `c${c}`).join(", ")}</li>`,
        )}</ul></div>`
      : "";
  const decision = s.decision ? html`<p class="decision">Decision: ${s.decision}</p>` : "";
  return html`<section class="step" data-step="${s.label}">
<h3>${s.label} <span class="small">winner c${s.winner}</span></h3>
<table class="candidates"><thead><tr><th></th><th>text</th><th>tokens</th><th>check</th><th>score</th><th></th></tr></thead>
<tbody>${s.candidates.map(candidateRow)}</tbody></table>
${chosen}${ranking}${votes}${decision}
</section>`;
}

function resultPage(r: ResultRecord): string {
  const view = searchView(r.search);
  const body = html`
<div class="item-head">
${imageOf(r)}
<dl class="facts">
<dt>question</dt><dd class="question">${r.question}</dd>
<dt>answer</dt><dd class="answer">${r.answer ?? "—"}${r.correct === null ? "" : html` <span class="outcome outcome-${r.correct ? "c" : "w"}">${r.correct ? "correct" : "wrong"}</span>`}</dd>
<dt>gold</dt><dd>${r.gold ?? "—"}</dd>
<dt>search</dt><dd>${r.strategy} · beam ${r.beam} · judge ${r.judgeMode} · seed ${r.seed}${r.wellFormed ? "" : " · not well formed"}</dd>
<dt>model</dt><dd>${r.model.id} <code class="small">${r.model.digest}</code></dd>
<dt>cost</dt><dd>${r.search.counts.candidates} candidates · ${r.search.counts.comparisons} comparisons · ${r.search.counts.checks} checks · ${r.tokens.generated} tokens · ${r.timings.seconds.toFixed(2)} s on ${r.worker}</dd>
<dt>id</dt><dd>${r.id} (line ${r.line})</dd>
</dl>
</div>
<section class="stages"><h2>Chosen stages</h2>
${view.stages.map((s) => html`<div class="stage" data-stage="${s.stage}"><h3>${s.stage}</h3><p class="text">${s.text ?? "—"}</p></div>`)}
</section>
<section><h2>Search, step by step</h2>${view.steps.map(stepSection)}</section>`;
  return page(`Item ${r.item} of ${r.run}`, body);
}

function failurePage(f: FailureRecord): string {
  const staged = f.input.image?.startsWith("s3://") === true;
  const body = html`
<div class="item-head">
${staged ? imageOf(f) : ""}
<dl class="facts failure">
<dt>reason</dt><dd><code class="reason">${f.reason}</code></dd>
<dt>message</dt><dd class="message">${f.message}</dd>
<dt>where</dt><dd>${f.stage === "submit" ? "at submit" : "in the fleet"}${f.field ? ` · field ${f.field}` : ""}${f.line !== null ? ` · line ${f.line}` : ""}${f.attempts !== undefined ? ` · ${f.attempts} attempt${f.attempts === 1 ? "" : "s"}` : ""}</dd>
<dt>id</dt><dd>${f.id ?? "—"}</dd>
<dt>image</dt><dd>${f.input.image ?? "—"}</dd>
<dt>question</dt><dd class="question">${f.input.question ?? "—"}</dd>
<dt>at</dt><dd>${f.at}</dd>
</dl>
</div>`;
  return page(`Item ${f.item} of ${f.run} failed`, body);
}

export function itemPage(record: ResultRecord | FailureRecord): string {
  return record.kind === "result" ? resultPage(record) : failurePage(record);
}
