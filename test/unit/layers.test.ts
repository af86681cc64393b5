/** ARCHITECTURE.md's layout table, enforced: a forbidden import fails here with the file and the rule. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { checkLayers, importsOf, parseLayerTable } from "../support/layers.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const SOURCES = /^(apps|workers|shared|models|scripts|test)\/.*\.(ts|mjs|js)$/;

function trackedSources(): Map<string, string> {
  const names = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], { cwd: ROOT, encoding: "utf8" })
    .split("\n")
    .filter((f) => SOURCES.test(f));
  return new Map(names.map((f) => [f, readFileSync(path.join(ROOT, f), "utf8")]));
}

describe("layers", () => {
  const rules = parseLayerTable(readFileSync(path.join(ROOT, "ARCHITECTURE.md"), "utf8"));

  it("every import in the repository keeps to the layout table", () => {
    const report = checkLayers(trackedSources(), rules).map(
      (v) => `${v.file}: imports ${JSON.stringify(v.specifier)}, but ${v.rule}`,
    );
    expect(report).toEqual([]);
  });

  it("reports a forbidden import with the file and the rule", () => {
    const files = new Map([
      ["shared/core/search/machine.ts", 'import { Queue } from "bullmq";\nimport { x } from "../../io/config.ts";\n'],
      ["shared/core/protocol/stages.ts", 'import { z } from "zod";\nimport { y } from "./sentences.ts";\n'],
    ]);
    expect(checkLayers(files, rules)).toEqual([
      { file: "shared/core/search/machine.ts", specifier: "bullmq", rule: expect.stringMatching(/^shared\/core\/ may import /) },
      { file: "shared/core/search/machine.ts", specifier: "../../io/config.ts", rule: expect.stringMatching(/^shared\/core\//) },
    ]);
  });

  it("finds static, multi-line, re-exported and dynamic imports", () => {
    const source = [
      'import a from "a";',
      "import {",
      "  b,",
      '} from "./b.ts";',
      'export { c } from "@scope/c/sub";',
      'const d = await import("./d.ts");',
      'import "side-effect";',
    ].join("\n");
    expect(importsOf(source)).toEqual(
      ["a", "./b.ts", "@scope/c/sub", "side-effect", "./d.ts"].sort((x, y) => source.indexOf(x) - source.indexOf(y)),
    );
  });
});
