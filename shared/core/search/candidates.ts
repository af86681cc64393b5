/** Whether a generated candidate can be accepted as it is, judged from its text and stop rule. */
import { parseStageBlock, parseStructured } from "../protocol/stages.ts";
import type { Defect, Stop } from "./types.ts";

export function defectOf(stop: Stop, prefix: string, text: string, truncated: boolean): Defect | null {
  if (truncated) return "truncated";
  switch (stop.kind) {
    case "stage":
      // Ending anywhere but at the stage's end tag means the model emitted eos mid-stage or
      // wandered into another stage.
      return parseStageBlock(text, stop.stage) === null ? "malformed" : null;
    case "end":
      return parseStructured(prefix + text).wellFormed ? null : "malformed";
    case "sentence":
      // A sentence has no structure of its own; the whole answer is checked at the end.
      return null;
  }
}
