/**
 * swires: the reference's stage-wise retracing search (LLaVA-CoT's `swires.py`), scored by the
 * verifier. The reference scores with an external reward model and retraces unless the second
 * best reasoning scores above that model's population mean + 0.2533·sd (−0.77 and 2.08, its
 * published statistics, hard-coded). Here the population is the verifier's own: the
 * `calibration` in its verifier.json, measured by `stagebeam verifier calibrate` and reported
 * with every score it gives (VerifyResult.population), so the fleet and the in-process driver
 * read it alike; `swires.population` in the settings overrides it, and a verifier without one
 * has the reasonings scored so far for the item stand in for it. The cutoff is mean + `retraceZ`·sd, and the `retraceRank`-th best must clear it: the search
 * goes on once that many reasonings stand out.
 * Like the reference, reasonings pile up over retraces and the conclusions are written from the
 * best of them all.
 */
import { DEFAULT_SWIRES, type SearchParams } from "./params.ts";
import { spread } from "../verifier/calibration.ts";
import { rankByScore, stageStep, type NextStep, type PoolEntry, type Progress, type StepPlan } from "./plan.ts";

const settingsOf = (p: SearchParams) => p.swires ?? DEFAULT_SWIRES;

const retraceOf = (plan: StepPlan): number => Number(/-r(\d+)$/.exec(plan.key)?.[1] ?? 0);

export function swiresFirst(p: SearchParams): StepPlan {
  return stageStep(p, "SUMMARY", settingsOf(p).summaryWidth, "verifier");
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;

export function swiresAfter(p: SearchParams, done: StepPlan, g: Progress): NextStep | null {
  if (g.lastFinished || done.stop.kind !== "stage") return null;
  const s = settingsOf(p);
  const retrace = retraceOf(done);
  const captions = (r: number): NextStep => ({
    plan: stageStep(p, "CAPTION", s.captionWidth, "verifier", r),
    // The SUMMARY step continues nothing, so its winner's text is the accepted summary.
    bases: [g.trace[0]!.candidates[g.trace[0]!.winner]!.text],
    pool: [...g.pool],
  });
  switch (done.stop.stage) {
    case "SUMMARY":
      return captions(0);
    case "CAPTION":
      return {
        // The retrace test reads every reasoning's score, even when they all agree.
        plan: { ...stageStep(p, "REASONING", s.reasoningPerCaption, "verifier", retrace), needsScores: true },
        bases: g.ranked.slice(0, s.captionKeep).map((c) => c.text),
        pool: [...g.pool],
      };
    case "REASONING": {
      const pool: PoolEntry[] = [
        ...g.pool,
        ...g.ranked.map((c) => ({ text: c.text, score: c.score ?? 0, defect: c.defect, finished: c.finished })),
      ];
      const scores = pool.map((e) => e.score).sort((a, b) => b - a);
      const population = s.population ?? g.population;
      const { mean, sd } = population ?? spread(scores);
      const cutoff = mean + s.retraceZ * sd;
      const tested = scores[s.retraceRank - 1] ?? -Infinity;
      const clear = tested > cutoff;
      const again = !clear && retrace < s.maxRetraces;
      const decision = {
        reasonings: pool.length,
        tested: Number.isFinite(tested) ? round(tested) : "none",
        cutoff: round(cutoff),
        cutoffFrom: s.population !== undefined ? "settings" : g.population !== null ? "verifier" : "item",
        retrace: again,
      };
      if (again) return { ...captions(retrace + 1), pool, decision };
      const best = rankByScore(pool).slice(0, s.conclusionFrom);
      return {
        plan: stageStep(p, "CONCLUSION", 1, "verifier"),
        bases: best.map((i) => pool[i]!.text),
        pool: [],
        decision,
      };
    }
    case "CONCLUSION":
      return null;
  }
}
