/** The process-verifier contract: the folder's `verifier.json`, step cutting and marking, pooling, the text it reads. */
export * from "./template.ts";
export { splitSteps, markSteps } from "./steps.ts";
export { stepScore, poolScores } from "./pool.ts";
export { verifierPrompt, verifierText } from "./input.ts";
export { CalibrationSchema, calibrationOf, spread, type Calibration } from "./calibration.ts";
