/**
 * `next` says what work the search waits for; `apply` feeds the results back. The state is
 * kept settled (it always waits for real work or is done), so `next` only reads it and never
 * hands a driver an empty batch.
 */
import { parseStructured } from "../protocol/stages.ts";
import { defectOf } from "./candidates.ts";
import { SearchError } from "./errors.ts";
import { candidateId, checkId, compareId, sampleKey } from "./ids.ts";
import { freshStep, type SearchState, type StepState } from "./state.ts";
import { stepAfter } from "./strategies.ts";
import { decide, matchWinner, openBracket, pendingMatches, type Bracket } from "./tournament.ts";
import {
  CheckResultSchema,
  CompareResultSchema,
  GenerateResultSchema,
  type CandidateTrace,
  type CheckTrace,
  type ComparisonTrace,
  type GenerateRequest,
  type JudgeRequest,
  type GenerateResult,
  type JudgeResult,
  type SearchResult,
  type StepTrace,
  type Work,
} from "./types.ts";
import type { z } from "zod";

export function next(state: SearchState): Work {
  const step = state.current;
  if (step === null) return { kind: "done", result: resultOf(state) };
  switch (step.phase) {
    case "generate":
      return { kind: "generate", requests: generateRequests(state, step) };
    case "check":
      return { kind: "judge", requests: checkRequests(state, step) };
    case "compare":
      return { kind: "judge", requests: compareRequests(state, step) };
  }
}

/** Returns a new state; `state` and `results` are left untouched. */
export function apply(state: SearchState, results: ReadonlyArray<GenerateResult | JudgeResult>): SearchState {
  const { itemId } = state.params;
  const step = state.current;
  const work = next(state);
  if (step === null || work.kind === "done") throw new SearchError(itemId, "the search is done and expects no results");
  const byId = matchResults(
    itemId,
    work.requests.map((r) => r.id),
    results,
  );

  switch (step.phase) {
    case "generate":
      return settle(applyCandidates(state, step, work.requests as GenerateRequest[], byId));
    case "check":
      return settle(applyChecks(state, step, work.requests as JudgeRequest[], byId));
    case "compare":
      return settle(applyVerdicts(state, step, byId));
  }
}

/** The final result; only meaningful once `next` says done, but safe to call on any state. */
export function resultOf(state: SearchState): SearchResult {
  const parsed = parseStructured(state.prefix);
  return {
    text: state.prefix,
    stages: parsed.stages,
    answer: parsed.answer,
    wellFormed: parsed.wellFormed && !state.flawed,
    steps: state.steps,
    counts: state.counts,
  };
}

function generateRequests(state: SearchState, step: StepState): GenerateRequest[] {
  const { itemId, seed } = state.params;
  const { plan } = step;
  return Array.from({ length: plan.candidates }, (_, i) => ({
    id: candidateId(itemId, plan.key, i),
    prefix: state.prefix,
    stop: plan.stop,
    maxTokens: plan.maxTokens,
    sampleKey: sampleKey(seed, itemId, plan.key, i),
  }));
}

function checkRequests(state: SearchState, step: StepState): JudgeRequest[] {
  return step.candidates.map((c, i) => ({
    id: checkId(state.params.itemId, step.plan.key, i),
    kind: "check",
    template: "reasoning_check",
    hint: state.prefix,
    candidate: c.text,
  }));
}

function compareRequests(state: SearchState, step: StepState): JudgeRequest[] {
  return pendingMatches(bracketOf(state, step)).map((m) => ({
    id: compareId(state.params.itemId, step.plan.key, m.first, m.second),
    kind: "compare",
    template: step.plan.template,
    hint: state.prefix,
    first: step.candidates[m.first]!.text,
    second: step.candidates[m.second]!.text,
  }));
}

function matchResults(
  itemId: string,
  expected: readonly string[],
  results: ReadonlyArray<{ id?: unknown }>,
): Map<string, unknown> {
  if (!Array.isArray(results)) throw new SearchError(itemId, "results must be an array");
  const wanted = new Set(expected);
  const byId = new Map<string, unknown>();
  const unexpected: string[] = [];
  const duplicated: string[] = [];
  for (const r of results) {
    const id = typeof r === "object" && r !== null && typeof r.id === "string" ? r.id : null;
    if (id === null) {
      unexpected.push(JSON.stringify(r));
    } else if (!wanted.has(id)) {
      unexpected.push(id);
    } else if (byId.has(id)) {
      duplicated.push(id);
    } else {
      byId.set(id, r);
    }
  }
  const missing = expected.filter((id) => !byId.has(id));
  const problems = [
    missing.length > 0 ? `no result for ${missing.join(", ")}` : null,
    duplicated.length > 0 ? `more than one result for ${duplicated.join(", ")}` : null,
    unexpected.length > 0 ? `results that were not asked for: ${unexpected.join(", ")}` : null,
  ].filter((p) => p !== null);
  if (problems.length > 0) throw new SearchError(itemId, problems.join("; "));
  return byId;
}

function parseResult<S extends z.ZodType>(itemId: string, schema: S, id: string, raw: unknown): z.output<S> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const why = r.error.issues.map((i) => `${i.path.join(".") || "(result)"}: ${i.message}`).join("; ");
    throw new SearchError(itemId, `result ${id} is invalid: ${why}`);
  }
  return r.data;
}

function applyCandidates(
  state: SearchState,
  step: StepState,
  requests: readonly GenerateRequest[],
  byId: Map<string, unknown>,
): SearchState {
  const { itemId } = state.params;
  const candidates: CandidateTrace[] = requests.map((req) => {
    const r = parseResult(itemId, GenerateResultSchema, req.id, byId.get(req.id));
    return {
      id: req.id,
      sampleKey: req.sampleKey,
      text: r.text,
      tokens: r.tokens,
      truncated: r.truncated,
      finished: r.finished ?? false,
      defect: defectOf(step.plan.stop, state.prefix, r.text, r.truncated),
      detail: r.detail ?? null,
    };
  });
  const counts = {
    ...state.counts,
    candidates: state.counts.candidates + candidates.length,
    generatedTokens: state.counts.generatedTokens + candidates.reduce((s, c) => s + c.tokens, 0),
  };
  // With one candidate the check could not change the outcome, so it is not asked.
  if (step.plan.check && candidates.length > 1) {
    return { ...state, counts, current: { ...step, candidates, phase: "check" } };
  }
  const bracket = openBracket(
    candidates.map((_, i) => i),
    candidates.map((c) => c.defect),
  );
  return { ...state, counts, current: { ...step, candidates, phase: "compare", bracket } };
}

function applyChecks(
  state: SearchState,
  step: StepState,
  requests: readonly JudgeRequest[],
  byId: Map<string, unknown>,
): SearchState {
  const { itemId } = state.params;
  const checks: CheckTrace[] = requests.map((req, candidate) => {
    const r = parseResult(itemId, CheckResultSchema, req.id, byId.get(req.id));
    return { id: req.id, candidate, verdict: r.verdict, detail: r.detail ?? null };
  });
  const correct = checks.filter((c) => c.verdict === "correct").map((c) => c.candidate);
  // If the check rejects everyone it has told us nothing to choose by; let the tournament decide.
  const entrants = correct.length > 0 ? correct : checks.map((c) => c.candidate);
  const bracket = openBracket(
    entrants,
    step.candidates.map((c) => c.defect),
  );
  const counts = { ...state.counts, checks: state.counts.checks + checks.length };
  return { ...state, counts, current: { ...step, checks, phase: "compare", bracket } };
}

function applyVerdicts(state: SearchState, step: StepState, byId: Map<string, unknown>): SearchState {
  const { itemId } = state.params;
  const bracket = bracketOf(state, step);
  const pending = pendingMatches(bracket);
  const outcomes = pending.map((m) => {
    const id = compareId(itemId, step.plan.key, m.first, m.second);
    const r = parseResult(itemId, CompareResultSchema, id, byId.get(id));
    return { first: m.first, second: m.second, verdict: r.verdict, detail: r.detail ?? null };
  });
  const counts = { ...state.counts, comparisons: state.counts.comparisons + outcomes.length };
  return { ...state, counts, current: { ...step, bracket: decide(bracket, outcomes) } };
}

/** Closes the step once its tournament has a winner and plans the next one. */
function settle(state: SearchState): SearchState {
  const step = state.current;
  if (step === null || step.bracket === null || step.bracket.winner === null) return state;
  const winner = step.candidates[step.bracket.winner]!;
  const trace: StepTrace = {
    label: step.plan.label,
    candidates: step.candidates,
    checks: step.checks,
    entrants: step.bracket.entrants,
    comparisons: step.bracket.matches.map((m) => comparisonTrace(state.params.itemId, step, m)),
    winner: step.bracket.winner,
  };
  const prefix = state.prefix + winner.text;
  const steps = [...state.steps, trace];
  const plan = stepAfter(state.params, step.plan, {
    prefix,
    stepsDone: steps.length,
    lastFinished: winner.finished,
  });
  return {
    ...state,
    prefix,
    flawed: state.flawed || winner.defect !== null,
    steps,
    current: plan === null ? null : freshStep(plan),
  };
}

function comparisonTrace(itemId: string, step: StepState, m: Bracket["matches"][number]): ComparisonTrace {
  const verdict = m.verdict;
  if (verdict === null) throw new SearchError(itemId, `match c${m.first} v c${m.second} is undecided`);
  return {
    id: m.reason === "judge" ? compareId(itemId, step.plan.key, m.first, m.second) : null,
    round: m.round,
    first: m.first,
    second: m.second,
    verdict,
    winner: matchWinner(m),
    reason: m.reason,
    detail: m.detail,
  };
}

function bracketOf(state: SearchState, step: StepState): Bracket {
  if (step.bracket === null) throw new SearchError(state.params.itemId, `step ${step.plan.label} has no tournament`);
  return step.bracket;
}
