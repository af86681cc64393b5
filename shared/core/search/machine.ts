/**
 * `next` says what work the search waits for; `apply` feeds the results back. The state is
 * kept settled (it always waits for real work or is done), so `next` only reads it and never
 * hands a driver an empty batch.
 */
import { parseStructured } from "../protocol/stages.ts";
import { defectOf } from "./candidates.ts";
import { distinctOf, firstEquals } from "./merge.ts";
import { SearchError } from "./errors.ts";
import { candidateId, checkId, compareId, sampleKey, verifyId } from "./ids.ts";
import { rankByScore, type Ranked } from "./plan.ts";
import { freshStep, type SearchState, type StepState } from "./state.ts";
import { stepAfter } from "./strategies.ts";
import { decide, matchWinner, openBracket, pendingMatches, type Bracket } from "./tournament.ts";
import {
  CheckResultSchema,
  CompareResultSchema,
  DEFAULT_PAIRWISE_JUDGE,
  GenerateResultSchema,
  VerifyResultSchema,
  type CandidateTrace,
  type CheckTrace,
  type ComparisonTrace,
  type GenerateRequest,
  type JudgeRequest,
  type GenerateResult,
  type JudgeResult,
  type ScoreTrace,
  type SearchResult,
  type StepTrace,
  type VerifyRequest,
  type VerifyResult,
  type Work,
} from "./types.ts";
import { tallyVotes } from "./vote.ts";
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
    case "verify":
      return { kind: "verify", requests: verifyRequests(state, step) };
  }
}

/** Returns a new state; `state` and `results` are left untouched. */
export function apply(state: SearchState, results: ReadonlyArray<GenerateResult | JudgeResult | VerifyResult>): SearchState {
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
    case "verify":
      return settle(applyScores(state, step, work.requests as VerifyRequest[], byId));
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

/** The text candidate `i` continues: base b holds candidates b·N … b·N + N − 1. */
const baseOf = (step: StepState, i: number): string => step.bases[Math.floor(i / step.plan.candidates)]!;

/**
 * The candidates a generate work samples: all of them, or in a resample round those whose text
 * equals an earlier candidate's, under new ids and sample keys (`c<i>r<round>`).
 */
function generateSlots(step: StepState): number[] {
  if (step.candidates.length === 0) return Array.from({ length: step.plan.candidates * step.bases.length }, (_, i) => i);
  return firstEquals(step.candidates, (i) => baseOf(step, i), true).flatMap((first, i) => (first === i ? [] : [i]));
}

/** How many resample rounds the run allows this step (params.resample, limited to resampleStages). */
function resampleRounds(state: SearchState, step: StepState): number {
  const { resample = 0, resampleStages } = state.params;
  if (resampleStages === undefined) return resample;
  const { stop } = step.plan;
  return stop.kind === "stage" && resampleStages.includes(stop.stage) ? resample : 0;
}

function generateRequests(state: SearchState, step: StepState): GenerateRequest[] {
  const { itemId, seed } = state.params;
  const { plan } = step;
  const greedy = state.params.strategy === "greedy" ? { greedy: true as const } : {};
  const logProb = plan.select === "vote" || plan.select === "vote-weighted" ? { logProb: true as const } : {};
  // The run's temperature for this stage, else the item's own (SearchParams.temperature), else the model's.
  const stageT = plan.stop.kind === "stage" ? state.params.stageTemperature?.[plan.stop.stage] : undefined;
  const temperature = stageT ?? state.params.temperature;
  const { topP } = state.params;
  const sampling = { ...(temperature !== undefined ? { temperature } : {}), ...(topP !== undefined ? { topP } : {}) };
  const round = step.candidates.length === 0 ? "" : `r${step.resampled + 1}`;
  return generateSlots(step).map((i) => ({
    id: candidateId(itemId, plan.key, i) + round,
    prefix: baseOf(step, i),
    stop: plan.stop,
    maxTokens: plan.maxTokens,
    sampleKey: sampleKey(seed, itemId, plan.key, i) + round,
    ...greedy,
    ...logProb,
    ...sampling,
  }));
}

function verifyRequests(state: SearchState, step: StepState): VerifyRequest[] {
  const { stop } = step.plan;
  return distinctOf(step.sameAs).map((i) => ({
    id: verifyId(state.params.itemId, step.plan.key, i),
    prefix: baseOf(step, i),
    candidate: step.candidates[i]!.text,
    stage: stop.kind === "stage" ? stop.stage : null,
  }));
}

/** The pairwise judge every judge request of the search names. */
const judgeOf = (state: SearchState) => state.params.judge ?? DEFAULT_PAIRWISE_JUDGE;

function checkRequests(state: SearchState, step: StepState): JudgeRequest[] {
  return distinctOf(step.sameAs).map((i) => ({
    id: checkId(state.params.itemId, step.plan.key, i),
    kind: "check",
    template: "reasoning_check",
    hint: state.prefix,
    candidate: step.candidates[i]!.text,
    mode: judgeOf(state),
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
    mode: judgeOf(state),
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
  const drawn: CandidateTrace[] = requests.map((req) => {
    const r = parseResult(itemId, GenerateResultSchema, req.id, byId.get(req.id));
    return {
      id: req.id,
      sampleKey: req.sampleKey,
      text: r.text,
      tokens: r.tokens,
      truncated: r.truncated,
      finished: r.finished ?? false,
      defect: defectOf(step.plan.stop, req.prefix, r.text, r.truncated),
      logProb: r.logProb ?? null,
      detail: r.detail ?? null,
    };
  });
  const slots = generateSlots(step);
  const candidates = step.candidates.length === 0 ? drawn : step.candidates.map((c, i) => drawn[slots.indexOf(i)] ?? c);
  const replaced = [...step.replaced, ...(step.candidates.length === 0 ? [] : slots.map((i) => step.candidates[i]!))];
  const sampled = {
    ...state.counts,
    candidates: state.counts.candidates + drawn.length,
    generatedTokens: state.counts.generatedTokens + drawn.reduce((s, c) => s + c.tokens, 0),
  };
  const select = step.plan.select;
  const resampled = step.candidates.length === 0 ? 0 : step.resampled + 1;
  const again = { ...step, candidates, replaced, resampled };
  // A vote counts repeats, so only a judged or scored step samples a repeat again.
  if (
    select !== "vote" &&
    select !== "vote-weighted" &&
    resampled < resampleRounds(state, step) &&
    generateSlots(again).length > 0
  ) {
    return { ...state, counts: sampled, current: again };
  }
  const sameAs = firstEquals(candidates, (i) => baseOf(step, i), state.params.merge);
  const distinct = distinctOf(sameAs).length;
  const counted = (saved: number) => ({
    ...sampled,
    distinct: sampled.distinct + distinct,
    saved: sampled.saved + saved,
  });
  const current = { ...again, sameAs };
  if (select === "vote" || select === "vote-weighted") {
    const { votes, winner } = tallyVotes(
      candidates.map((c, i) => ({ text: baseOf(step, i) + c.text, tokens: c.tokens, logProb: c.logProb, defect: c.defect })),
      select === "vote-weighted",
    );
    return { ...state, counts: counted(0), current: { ...current, votes, ranking: [winner] } };
  }
  if (select === "verifier") {
    // One candidate needs no score to be chosen, nor do copies of one text unless the strategy reads the score later.
    if (candidates.length === 1 || (distinct === 1 && !step.plan.needsScores)) {
      const ranking = rankByScore(candidates.map((c) => ({ score: null, defect: c.defect })));
      return { ...state, counts: counted(candidates.length === 1 ? 0 : candidates.length), current: { ...current, ranking } };
    }
    return { ...state, counts: counted(candidates.length - distinct), current: { ...current, phase: "verify" } };
  }
  // With one text the check could not change the outcome, so it is not asked.
  if (step.plan.check && distinct > 1) {
    return { ...state, counts: counted(candidates.length - distinct), current: { ...current, phase: "check" } };
  }
  const checksSaved = step.plan.check && candidates.length > 1 ? candidates.length : 0;
  const bracket = openBracket(
    candidates.map((_, i) => i),
    candidates.map((c) => c.defect),
    sameAs,
  );
  return { ...state, counts: counted(checksSaved), current: { ...current, phase: "compare", bracket } };
}

function applyChecks(
  state: SearchState,
  step: StepState,
  requests: readonly JudgeRequest[],
  byId: Map<string, unknown>,
): SearchState {
  const { itemId } = state.params;
  const asked = new Map(requests.map((req) => [req.id, parseResult(itemId, CheckResultSchema, req.id, byId.get(req.id))]));
  // A merged candidate shares its first equal's check.
  const checks: CheckTrace[] = step.sameAs.map((first, candidate) => {
    const r = asked.get(checkId(itemId, step.plan.key, first))!;
    return { id: r.id, candidate, verdict: r.verdict, detail: r.detail ?? null };
  });
  const correct = checks.filter((c) => c.verdict === "correct").map((c) => c.candidate);
  // If the check rejects everyone it has told us nothing to choose by; let the tournament decide.
  const entrants = correct.length > 0 ? correct : checks.map((c) => c.candidate);
  const bracket = openBracket(
    entrants,
    step.candidates.map((c) => c.defect),
    step.sameAs,
  );
  const counts = { ...state.counts, checks: state.counts.checks + requests.length };
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

function applyScores(
  state: SearchState,
  step: StepState,
  requests: readonly VerifyRequest[],
  byId: Map<string, unknown>,
): SearchState {
  const { itemId } = state.params;
  const asked = new Map(requests.map((req) => [req.id, parseResult(itemId, VerifyResultSchema, req.id, byId.get(req.id))]));
  // A merged candidate shares its first equal's score.
  const scores: ScoreTrace[] = step.sameAs.map((first, candidate) => {
    const r = asked.get(verifyId(itemId, step.plan.key, first))!;
    return { id: r.id, candidate, score: r.score, steps: r.steps, detail: r.detail ?? null };
  });
  const ranking = rankByScore(step.candidates.map((c, i) => ({ score: scores[i]!.score, defect: c.defect })));
  const counts = { ...state.counts, verifications: state.counts.verifications + requests.length };
  const population = [...asked.values()].find((r) => r.population !== undefined)?.population ?? null;
  return { ...state, counts, current: { ...step, scores, ranking, population } };
}

/** Closes the step once a tournament, a verifier or a vote has picked its winner, and plans the next one. */
function settle(state: SearchState): SearchState {
  const step = state.current;
  if (step === null) return state;
  const winnerIndex = step.bracket?.winner ?? step.ranking?.[0] ?? null;
  if (winnerIndex === null) return state;
  const winner = step.candidates[winnerIndex]!;
  const trace: StepTrace = {
    label: step.plan.label,
    candidates: step.candidates,
    replaced: step.replaced,
    sameAs: state.params.merge ? step.sameAs : [],
    checks: step.checks,
    entrants: step.bracket?.entrants ?? step.candidates.map((_, i) => i),
    comparisons: step.bracket?.matches.map((m) => comparisonTrace(state.params.itemId, step, m)) ?? [],
    scores: step.scores,
    votes: step.votes,
    ranking: step.bracket === null ? (step.ranking ?? []) : [],
    decision: null,
    winner: winnerIndex,
  };
  const prefix = baseOf(step, winnerIndex) + winner.text;
  // Every match that equal texts decided would have been a judge call without merging.
  const mergedMatches = trace.comparisons.filter((c) => c.reason === "equal" || c.reason === "repeat").length;
  const ranked: Ranked[] = (step.ranking ?? [winnerIndex]).map((i) => ({
    text: baseOf(step, i) + step.candidates[i]!.text,
    score: step.scores[i]?.score ?? null,
    defect: step.candidates[i]!.defect,
    finished: step.candidates[i]!.finished,
  }));
  const following = stepAfter(state.params, step.plan, {
    prefix,
    stepsDone: state.steps.length + 1,
    lastFinished: winner.finished,
    ranked,
    population: step.population,
    pool: state.pool,
    trace: [...state.steps, trace],
  });
  return {
    ...state,
    prefix,
    counts: { ...state.counts, saved: state.counts.saved + mergedMatches },
    flawed: state.flawed || winner.defect !== null,
    steps: [...state.steps, { ...trace, decision: following?.decision ?? null }],
    current: following === null ? null : freshStep(following.plan, following.bases),
    pool: following?.pool ?? state.pool,
  };
}

function comparisonTrace(itemId: string, step: StepState, m: Bracket["matches"][number]): ComparisonTrace {
  const verdict = m.verdict;
  if (verdict === null) throw new SearchError(itemId, `match c${m.first} v c${m.second} is undecided`);
  const judged = m.reason === "judge" ? ([m.first, m.second] as const) : m.reason === "repeat" ? m.source : null;
  return {
    id: judged === null ? null : compareId(itemId, step.plan.key, judged[0], judged[1]),
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
