/**
 * `stagebeam model check DIR`: validates a model folder the way the engine loads it (files per
 * session and dtype, JSON files, tokenizer and chat template, the sessions' signatures against
 * the contract, stage tags, judge prompts, and verifier.json when the folder is a verifier) and prints what will be used. Exit 0 when it loads,
 * 2 with the one error that stops it, naming the file, the field and what was expected.
 * It loads ONNX Runtime and the tokenizer, nothing of the fleet.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { closeTag, openTag, STAGES } from "../../../shared/core/protocol/stages.ts";
import { renderJudgeText, type JudgeTemplates } from "../../../shared/core/prompts/templates.ts";
import { loadConfig } from "../../../shared/io/config.ts";
import { ModelFolderError } from "../../../workers/engine/errors.ts";
import { Engine, Verifier, type EngineRuntime } from "../../../workers/engine/index.ts";
import { VERIFIER_FILE } from "../../../shared/core/verifier/index.ts";
import type { ModelFolder } from "../../../workers/engine/model-folder.ts";
import type { SessionName } from "../../../workers/engine/model-files.ts";
import { CliExit, EXIT_USAGE } from "./common.ts";
import { exportModelCommand } from "./model-export.ts";
import { mllamaPreprocessor } from "../../../workers/engine/model-schemas.ts";

interface CheckOptions {
  dtype?: string;
  json: boolean;
}

export interface ModelCheckReport {
  dir: string;
  family: string;
  sessions: { session: SessionName; file: string; dtype: string; externalData: string[] }[];
  /** The provider each session really got (EXECUTION_PROVIDERS, CPU when one failed) and where the decoder's KV lives. */
  runtime: {
    providers: EngineRuntime["providers"];
    kvPlace: EngineRuntime["kvPlace"];
    summary: string;
    failures: Record<string, string>;
  };
  imageToken: {
    text: string;
    id: number;
    perImage: number | "depends on the image" | "one, read by cross-attention";
    per: "image" | "tile";
  };
  /** mllama: the tiles an image is cut into and the decoder layers that cross-attend to it. */
  cross: { maxTiles: number; tileSize: number; crossAttentionLayers: number[]; decoderLayers: number } | null;
  bos: { text: string; id: number; addedBy: "tokenizer" | "chat template" } | null;
  eos: { ids: number[]; texts: string[] };
  chatTemplate: string;
  judgeTemplates: string;
  /** The tokens of each verdict word after verdict_prefix (score mode reads the first). */
  verdictTokens: Record<string, string[]>;
  /** Tokens each stage tag takes; 1 means a single (special) token. */
  stageTags: Record<string, number>;
  digest: string;
  /** The folder's verifier.json, when it has one: checked as a verifier loads it. */
  verifier: { marker: string; good: string; bad: string; pool: string; steps: Record<string, string>; digest: string } | null;
}

/** Every judge template renders (a jinja error names the template). */
function checkJudgeTemplates(folder: ModelFolder): void {
  const t: JudgeTemplates = folder.judgeTemplates;
  const file = folder.judgeTemplatesSource === "judge_templates.json" ? "judge_templates.json" : null;
  const render = (what: string, run: () => string) => {
    try {
      run();
    } catch (err) {
      throw new ModelFolderError(
        folder.dir,
        file,
        `judge prompts (${folder.judgeTemplatesSource}): ${what} does not render (${(err as Error).message}); expected a jinja template`,
      );
    }
  };
  const sample = { first: "a", second: "b", hint: "h" };
  for (const template of Object.keys(t.compare) as (keyof JudgeTemplates["compare"])[])
    render(`compare.${template}`, () => renderJudgeText(t, "q", { kind: "compare", template, ...sample }));
  render("reasoning_check", () => renderJudgeText(t, "q", { kind: "check", hint: "h", candidate: "c" }));
}

export async function checkModelFolder(dir: string, env: NodeJS.ProcessEnv): Promise<ModelCheckReport> {
  const { model, engine: engineConfig } = loadConfig({ ...env, MODEL_DIR: dir, MODEL_URI: undefined }, ["model", "engine"]);
  // Loaded exactly as ask, eval and the workers load it: folder, processor, sessions on EXECUTION_PROVIDERS and their contract.
  const engine = await Engine.load(dir, {
    executionProviders: engineConfig.executionProviders,
    ...(model.dtype !== undefined ? { dtype: model.dtype } : {}),
  });
  await engine.close();
  const { folder, tokenizer } = engine;
  const { providers, kvPlace, summary } = engine.runtime;
  checkJudgeTemplates(folder);
  const verifier = existsSync(path.join(folder.dir, VERIFIER_FILE)) ? await Verifier.over(engine) : null;

  const { spec } = folder;
  const templateBos = folder.tokenizer.bosToken !== "" && tokenizer.renderPrompt("q").startsWith(folder.tokenizer.bosToken);
  const bosId = tokenizer.addedBos ?? (templateBos ? (tokenizer.tokenId(folder.tokenizer.bosToken) ?? null) : null);
  const stageTags: Record<string, number> = {};
  for (const stage of STAGES) for (const tag of [openTag(stage), closeTag(stage)]) stageTags[tag] = tokenizer.encode(tag).length;
  const t = folder.judgeTemplates;
  const words = {
    "1": t.choices["1"],
    "2": t.choices["2"],
    correct: t.check_answers.correct,
    incorrect: t.check_answers.incorrect,
  };
  const verdictTokens = Object.fromEntries(
    Object.entries(words).map(([k, text]) => [k, tokenizer.encode(text).map((id) => tokenizer.tokenString(id) ?? String(id))]),
  );
  return {
    dir: folder.dir,
    family: folder.family.name,
    sessions: Object.values(folder.sessions).map((s) => ({ ...s })),
    runtime: { providers, kvPlace, summary, failures: engine.info.providerFailures },
    imageToken: {
      text: folder.tokenizer.imageToken,
      id: spec.imageTokenId,
      perImage:
        folder.family.imageTokens === "cross" ? "one, read by cross-attention" : (spec.imageSeqLength ?? "depends on the image"),
      per: folder.family.imageTokens === "processor" ? "tile" : "image",
    },
    cross: folder.family.vision === "cross" ? crossReport(folder) : null,
    bos:
      bosId === null
        ? null
        : {
            text: tokenizer.tokenString(bosId) ?? "",
            id: bosId,
            addedBy: tokenizer.addedBos !== null ? "tokenizer" : "chat template",
          },
    eos: { ids: spec.eosTokenIds, texts: spec.eosTokenIds.map((id) => tokenizer.tokenString(id) ?? "?") },
    chatTemplate: folder.tokenizer.chatTemplateSource,
    judgeTemplates: folder.judgeTemplatesSource === "default" ? "the LLaVA-CoT paper's (default)" : folder.judgeTemplatesSource,
    verdictTokens,
    stageTags,
    digest: folder.digest,
    verifier:
      verifier === null
        ? null
        : {
            marker: verifier.template.marker,
            good: verifier.template.good,
            bad: verifier.template.bad,
            pool: verifier.template.pool,
            steps: { default: verifier.template.steps.default, ...verifier.template.steps.stages },
            digest: verifier.digest,
          },
  };
}

function crossReport(folder: ModelFolder): NonNullable<ModelCheckReport["cross"]> {
  const pre = mllamaPreprocessor(folder.configs.preprocessor);
  const layers = folder.spec.crossAttentionLayers;
  return {
    maxTiles: pre.max_image_tiles,
    tileSize: pre.size.height,
    crossAttentionLayers: layers,
    decoderLayers: folder.spec.numLayers + layers.length,
  };
}

function printReport(r: ModelCheckReport): void {
  const row = (label: string, value: string) => console.log(`${label.padEnd(14)} ${value}`);
  row("model folder", r.dir);
  row("family", r.family);
  r.sessions.forEach((s, i) => {
    const extra = s.externalData.length === 0 ? "" : ` + ${s.externalData.join(", ")}`;
    row(i === 0 ? "sessions" : "", `${s.session.padEnd(21)} ${s.file} (${s.dtype})${extra}`);
  });
  const count =
    typeof r.imageToken.perImage === "number" ? `${r.imageToken.perImage} per ${r.imageToken.per}` : r.imageToken.perImage;
  row("runs on", r.runtime.summary);
  for (const [provider, why] of Object.entries(r.runtime.failures)) row("", `${provider} failed, not used: ${why}`);
  row("image token", `${r.imageToken.text} (id ${r.imageToken.id}), ${count}`);
  if (r.cross !== null) {
    const c = r.cross;
    row("image tiles", `up to ${c.maxTiles} of ${c.tileSize}x${c.tileSize}`);
    row(
      "cross-attn",
      `layers ${c.crossAttentionLayers.join(", ")} (${c.crossAttentionLayers.length} of ${c.decoderLayers}); their keys and values computed once per item`,
    );
  }
  row("BOS", r.bos === null ? "none" : `${r.bos.text} (id ${r.bos.id}), from the ${r.bos.addedBy}`);
  row("EOS", r.eos.ids.map((id, i) => `${r.eos.texts[i]} (id ${id})`).join(", "));
  row("chat template", r.chatTemplate);
  row("judge prompts", r.judgeTemplates);
  const tokens = (k: string) => `[${(r.verdictTokens[k] ?? []).join(" ")}]`;
  row(
    "verdict words",
    Object.keys(r.verdictTokens)
      .map((k) => `${k} ${tokens(k)}`)
      .join(", "),
  );
  const tags = Object.entries(r.stageTags);
  const single = tags.every(([, n]) => n === 1);
  row("stage tags", single ? "one token each" : tags.map(([tag, n]) => `${tag} ${n}`).join(", "));
  row("digest", r.digest);
  if (r.verifier !== null) {
    const v = r.verifier;
    const steps = Object.entries(v.steps)
      .map(([k, rule]) => `${k} ${rule}`)
      .join(", ");
    row("verifier", `marker ${v.marker}, good ${v.good}, bad ${v.bad}, pooled by ${v.pool}; steps: ${steps}`);
    row("", `digest ${v.digest} (with verifier.json)`);
  }
  console.log("ok");
}

const checkCommand = new Command("check")
  .description("validate a model folder and print what the engine will load from it")
  .argument("<dir>", "the model folder")
  .option("--dtype <setting>", "which ONNX files to load (as MODEL_DTYPE: q4, or vision_encoder=fp16,decoder_model_merged=q4)")
  .option("--json", "print the report (or the error) as JSON", false)
  .action(async (dir: string, o: CheckOptions) => {
    const env = o.dtype === undefined ? process.env : { ...process.env, MODEL_DTYPE: o.dtype };
    let report: ModelCheckReport;
    try {
      report = await checkModelFolder(dir, env);
    } catch (err) {
      if (!(err instanceof ModelFolderError)) throw err;
      if (o.json) {
        console.log(JSON.stringify({ ok: false, error: { file: err.file, message: err.message } }, null, 2));
        throw new CliExit(EXIT_USAGE);
      }
      throw new CliExit(EXIT_USAGE, err.message);
    }
    if (o.json) console.log(JSON.stringify({ ok: true, ...report }, null, 2));
    else printReport(report);
  });

export const modelCommand = new Command("model")
  .description("model folders: check one before running it, or export one from a Hugging Face checkpoint")
  .addCommand(checkCommand)
  .addCommand(exportModelCommand);
