/** `stagebeam verifier calibrate` on the bundled models: measures the verifier's reasoning scores and writes them into a copy's verifier.json. */
import { cp, mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { DEMO_SAMPLE } from "../../apps/cli/commands/demo.ts";
import { BUNDLED_MODEL_DIR, BUNDLED_VERIFIER_DIR } from "../../shared/io/config.ts";
import { VerifierTemplateSchema } from "../../shared/core/verifier/index.ts";
import { runCli } from "../support/cli.ts";

let verifier: string;

beforeAll(async () => {
  verifier = path.join(await mkdtemp(path.join(tmpdir(), "cli-verifier-")), "prm");
  await cp(BUNDLED_VERIFIER_DIR, verifier, { recursive: true });
});

describe("stagebeam verifier calibrate", () => {
  it("writes the mean and sd of every reasoning swires samples into verifier.json, the rest of the file kept", async () => {
    const before = JSON.parse(await readFile(path.join(verifier, "verifier.json"), "utf8")) as Record<string, unknown>;
    const r = await runCli([
      "verifier",
      "calibrate",
      "--set",
      DEMO_SAMPLE,
      "--verifier",
      verifier,
      "--limit",
      "2",
      "--describe",
      "demo, 2 items",
    ]);
    expect(r.code, r.stderr).toBe(0);
    // swires' first pass: two captions kept, two reasonings each, so four reasoning scores an item.
    expect(r.stdout).toMatch(
      /^8 reasoning scores from 2 items: mean 0\.\d+, sd 0\.\d+; swires cutoff mean \+ 0\.2533·sd = 0\.\d+$/m,
    );
    const after = VerifierTemplateSchema.parse(JSON.parse(await readFile(path.join(verifier, "verifier.json"), "utf8")));
    const { calibration, ...rest } = after;
    expect(rest).toEqual(VerifierTemplateSchema.parse({ ...before, calibration: undefined }));
    expect(calibration).toMatchObject({ stage: "REASONING", scores: 8, items: 2, set: "demo, 2 items", seed: 1 });
    expect(r.stdout).toContain(`mean ${calibration!.mean}, sd ${calibration!.sd}`);
  });

  it("refuses a model folder that is not a verifier, naming verifier.json", async () => {
    const r = await runCli(["verifier", "calibrate", "--set", DEMO_SAMPLE, "--verifier", BUNDLED_MODEL_DIR, "--limit", "1"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/verifier\.json/);
  });
});
