/**
 * `stagebeam model check` on the bundled model and on broken copies: exit 0 with what will be
 * loaded, or 2 with one error naming the file; and it loads nothing of the fleet.
 */
import { cp, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../apps/demo/services/worker-processes.ts";
import { runCli } from "../support/cli.ts";
import { SELF_VERIFIER_TEMPLATE, selfVerifierFolder } from "../support/self-verifier.ts";

const MODEL = path.join(REPO_ROOT, "models/stagebeam-tiny");
const RECORDER = path.join(REPO_ROOT, "test/support/record-modules.mjs");
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "model-check-"));
});

describe("stagebeam model check", () => {
  it("prints what the bundled model loads, and loads neither BullMQ nor ioredis", async () => {
    const modules = path.join(dir, "modules.txt");
    const out = await runCli(["model", "check", MODEL], {
      NODE_OPTIONS: `--import ${RECORDER}`,
      RECORD_MODULES_TO: modules,
    });
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/^family\s+stagebeam-tiny$/m);
    expect(out.stdout).toMatch(/^sessions\s+vision_encoder\s+vision_encoder\.onnx \(fp32\)$/m);
    expect(out.stdout).toMatch(/^runs on\s+decoder on cpu \(KV in host memory\), vision on cpu, embed on cpu$/m);
    expect(out.stdout).toMatch(/^image token\s+<image> \(id 6\), 64 per image$/m);
    expect(out.stdout).toMatch(/^judge prompts\s+judge_templates\.json$/m);
    expect(out.stdout).toMatch(/^stage tags\s+one token each$/m);
    expect(out.stdout).toMatch(/^ok$/m);
    const loaded = (await readFile(modules, "utf8")).split("\n");
    expect(loaded.some((url) => url.endsWith("/apps/cli/commands/model.ts"))).toBe(true);
    expect(loaded.filter((url) => /\/node_modules\/(bullmq|ioredis)\//.test(url))).toEqual([]);
  });

  it("reports as JSON, with the paper's judge prompts for a folder without its own", async () => {
    const copy = path.join(dir, "no-judge");
    await cp(MODEL, copy, { recursive: true, dereference: true });
    await rm(path.join(copy, "judge_templates.json"));
    const out = await runCli(["model", "check", copy, "--json"]);
    expect(out.code, out.stderr).toBe(0);
    const report = JSON.parse(out.stdout) as { ok: boolean; family: string; judgeTemplates: string; sessions: unknown[] };
    expect(report).toMatchObject({ ok: true, family: "stagebeam-tiny", judgeTemplates: "the LLaVA-CoT paper's (default)" });
    expect(report.sessions).toHaveLength(3);
  });

  it("exits 2 naming the file for a missing dtype, and for a bad MODEL_DTYPE", async () => {
    const out = await runCli(["model", "check", MODEL, "--dtype", "q4"]);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(
      /^stagebeam: vision_encoder_q4\.onnx: not found \(dtype q4\); the folder has dtypes fp32 for vision_encoder/m,
    );
    const json = await runCli(["model", "check", MODEL, "--dtype", "decoder_model_merged=q4", "--json"]);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { file: "decoder_model_merged_q4.onnx" } });
    const bad = await runCli(["model", "check", MODEL], { MODEL_DTYPE: "int3" });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/MODEL_DTYPE: got "int3"; expected one of fp32/);
  });

  it("checks a verifier folder's verifier.json: prints its contract, or exits 2 naming the file and the field", async () => {
    const good = await runCli(["model", "check", await selfVerifierFolder(dir)]);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toMatch(
      /^verifier\s+marker <pad>, good correct, bad incorrect, pooled by min; steps: default sentences/m,
    );
    const bad = await runCli(["model", "check", await selfVerifierFolder(dir, { ...SELF_VERIFIER_TEMPLATE, marker: "<step>" })]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /^stagebeam: verifier\.json: marker "<step>" is 3 tokens .* expected a text that is exactly one token/m,
    );
  });
});
