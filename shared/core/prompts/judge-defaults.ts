import type { JudgeTemplates } from "./templates.ts";

/**
 * The judge prompts of the LLaVA-CoT paper's stage-level beam search, for a model folder that
 * brings no judge_templates.json. Wording from the reference implementation's `judge` method
 * (github.com/PKU-YuanGroup/LLaVA-CoT, inference/VLMEvalKit/inference_demo.py; the same prompts
 * are in inference/demo/simple_inference.py): one instruction per stage, the question, the
 * hint, the two responses, the stage's reminder and the output format "Since [reason], I choose
 * response [1/2]." Two changes to fit these templates: "Repsonse" is spelt "Response" and "invovles" "involves", and the
 * reasoning check's lines lose the indentation of the Python string they were written in. The
 * reference asks the reasoning check without the image; here every judge prompt has it in front.
 */
const compare = (instruction: string, reminder: string): string =>
  [
    `Now you act as a judge, helping me determine which of the two texts I provide ${instruction}`,
    "",
    // A newline right after a block tag is dropped when the template renders, hence the '\n' literals.
    "Question: {{ question }}{% if hint %}{{ '\\n\\n' }}Hint about the Question: {{ hint }}{% endif %}{{ '\\n' }}Response 1: {{ first }}",
    "Response 2: {{ second }}",
    "",
    `${reminder}${reminder === "" ? "" : " "}Please strictly follow the following format requirements when outputting, and don’t have any other unnecessary words.`,
    "",
    'Output format: "Since [reason], I choose response [1/2]."',
  ].join("\n");

const SUMMARY_RULE =
  "The summary should focus on outlining the main approach instead of stating specific analytical reasoning or math formula.";
const CAPTION_RULE =
  "It is essential that the captions are as thorough as possible while remaining accurate, capturing as many details as possible rather than providing only general commentary.";
const REASONING_RULE =
  "Begin by thoroughly reviewing the question, followed by an in-depth examination of each answer individually, noting any differences. Subsequently, analyze these differences to determine which response demonstrates stronger reasoning and provide a clear conclusion.";
const CONCLUSION_RULE =
  "The conclusion should align with the reasoning presented in the hint. The conclusion should never refuse to answer the question.";

export const DEFAULT_JUDGE_TEMPLATES: JudgeTemplates = {
  compare: {
    SUMMARY: compare(
      `better provides a summary of what it should do to solve the question. ${SUMMARY_RULE}`,
      "Please note that a better summary should focus on outlining the main approach instead of stating specific analytical reasoning or math formula.",
    ),
    CAPTION: compare(
      `better summarizes the information in the image related to the question, and has fewer errors. ${CAPTION_RULE}`,
      "Please note that a better caption should be as thorough as possible while remaining accurate, capturing as many details as possible rather than providing only general commentary.",
    ),
    REASONING: compare(
      `better explains the reasoning process to solve the question, and has fewer errors. ${REASONING_RULE}`,
      REASONING_RULE,
    ),
    CONCLUSION: compare(
      `offers a more effective conclusion to the question. ${CONCLUSION_RULE}`,
      "Please note that a better conclusion should align with the reasoning presented in the hint. The conclusion should never refuse to answer the question.",
    ),
    all: compare("better answers the question.", ""),
    sentence: compare("is a better next sentence for the answer to the question.", ""),
  },
  reasoning_check: [
    "Now you act as a judge, helping me determine whether the reasoning process in the given text is correct and accurate based on the given information.",
    "You should assume that the given information about the image is correct.",
    "You should only consider the reasoning process itself, not the correctness of the background information.",
    "If the reasoning process involves any calculations, you should verify the accuracy of the calculations.",
    "You should output 'correct' if you don't find any errors in the reasoning process, and 'incorrect' if you find any errors.",
    "",
    "Given Information: {{ hint }}",
    "",
    "Reasoning Process: {{ candidate }}",
  ].join("\n"),
  verdict_prefix: "I choose response",
  choices: { "1": " 1", "2": " 2" },
  check_answers: { correct: "correct", incorrect: "incorrect" },
};
