/** `stagebeam ask`: one image, one question, answered in process with the chosen search. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Command } from "commander";
import { STAGES, type Stage } from "../../../shared/core/protocol/stages.ts";
import type { SearchResult } from "../../../shared/core/search/types.ts";
import { runSearch } from "../../../shared/core/search/drive.ts";
import { needsVerifier, paramsFor, settingsLabel } from "../../../shared/core/search/settings.ts";
import { toItemId } from "../../../shared/core/ids.ts";
import { ItemInputError, openItemExecutor, type Verifier } from "../../../workers/engine/index.ts";
import { CliExit, EXIT_FAILURE, textOption } from "./common.ts";
import {
  addLocalEngineOptions,
  loadLocalEngine,
  loadLocalVerifier,
  noteBundledModel,
  sumCounters,
  type LocalEngineCliOptions,
} from "./local-engine.ts";
import { searchSettings } from "./search-options.ts";

interface AskOptions extends LocalEngineCliOptions {
  image: string;
  question: string;
  json: boolean;
}

/** Why a stage has no text: the accepted candidate of its step ran out of tokens or broke the format. */
function missingStage(result: SearchResult, stage: Stage): string {
  const step = result.steps.find((st) => st.label === stage);
  const winner = step?.candidates[step.winner];
  if (winner?.defect === "truncated")
    return `(none: the accepted candidate stopped at the ${winner.tokens}-token cap before </${stage}>)`;
  if (winner?.defect === "malformed") return `(none: the accepted candidate did not end with </${stage}>)`;
  return "(missing)";
}

export const askCommand = addLocalEngineOptions(
  new Command("ask")
    .description("answer one question about one image, in four stages, on this machine")
    .requiredOption("--image <path>", "image file (PNG, JPEG, WebP, …)")
    .requiredOption("--question <text>", "the question", textOption("--question")),
)
  .option("--json", "print the full trace as JSON", false)
  .action(async (o: AskOptions) => {
    const settings = searchSettings(o);
    const image = await readFile(o.image).catch((error: NodeJS.ErrnoException) => {
      throw new CliExit(EXIT_FAILURE, `--image ${o.image}: cannot read the file (${error.code ?? error.message})`);
    });
    const engine = await loadLocalEngine(o.model);
    noteBundledModel(engine, "ask");
    const itemId = toItemId(path.basename(o.image).replace(/\.[^.]*$/, "") || "item");
    const started = performance.now();
    let verifier: Verifier | null = null;
    try {
      verifier = needsVerifier(settings) ? await loadLocalVerifier(o.verifier, engine) : null;
      const item = await openItemExecutor(engine, { id: itemId, image, question: o.question }, verifier).catch(
        (error: unknown) => {
          if (error instanceof ItemInputError) throw new CliExit(EXIT_FAILURE, error.message);
          throw error;
        },
      );
      const result = await runSearch(paramsFor(itemId, settings), item);
      item.close();
      const seconds = (performance.now() - started) / 1000;
      const counters = sumCounters(engine, verifier);
      if (o.json) {
        console.log(
          JSON.stringify(
            { itemId, question: o.question, settings, model: engine.info.digest, result, counters, seconds },
            null,
            2,
          ),
        );
        return;
      }
      for (const stage of STAGES)
        console.log(`${stage.padEnd(10)} ${result.stages[stage]?.trim() ?? missingStage(result, stage)}`);
      console.log(`\nanswer: ${result.answer ?? "(none)"}${result.wellFormed ? "" : "  [not well formed]"}`);
      console.log(
        `${settingsLabel(settings)}: ${counters.forwardPasses} model calls ` +
          `(${counters.decoderCalls} decoder), ${counters.generatedTokens} tokens generated, ` +
          `${counters.decoderTokens} through the decoder, ${result.counts.comparisons} comparisons, ${seconds.toFixed(2)} s`,
      );
    } finally {
      await verifier?.close();
      await engine.close();
    }
  });
