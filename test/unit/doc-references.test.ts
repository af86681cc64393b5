/**
 * Docs and source headers stand alone: every repository path they cite exists, and nothing
 * points at the design guide outside the repository.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");
const TOP = "(?:apps|workers|shared|models|scripts|test|infra|\\.ci)";
/** A cited path: a top-level folder, then path characters; wildcards and placeholders are not paths. */
const CITED = new RegExp(`(?<![\\w./-])(${TOP}/(?:[\\w./-]*[\\w/])?)`, "g");
const CHECKED = /\.(md|ts|mjs|py|sh)$|^\.ci\//;

function files(): string[] {
  return execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], { cwd: ROOT, encoding: "utf8" })
    .split("\n")
    .filter((f) => f !== "" && CHECKED.test(f) && !f.startsWith("models/training/sweeps/"));
}

/** The whole word a match starts, up to white space or a quote: where a wildcard or placeholder would show. */
const wordAt = (text: string, at: number) => /^[^\s`'"]*/.exec(text.slice(at))![0];

function citedPaths(text: string): string[] {
  return [...text.matchAll(CITED)]
    .filter((m) => !/[*<>{}]/.test(wordAt(text, m.index)))
    .map((m) => m[1]!.replace(/\.$/, ""))
    .filter((p) => !p.split("/").includes(".work")); // generated outputs (git-ignored), not citations
}

describe("doc references", () => {
  it("every repository path that a doc or source file cites exists", () => {
    const missing = files()
      .filter((f) => f !== "test/unit/doc-references.test.ts")
      .flatMap((file) =>
        citedPaths(readFileSync(path.join(ROOT, file), "utf8"))
          .filter((p) => !existsSync(path.join(ROOT, p)))
          .map((p) => `${file}: cites ${p}, which does not exist`),
      );
    expect([...new Set(missing)]).toEqual([]);
  });

  it("nothing points outside the repository at the design guide", () => {
    const outside = files()
      .filter((f) => f !== "test/unit/doc-references.test.ts")
      .filter((f) => /DESIGN(\.md| §)/.test(readFileSync(path.join(ROOT, f), "utf8")));
    expect(outside).toEqual([]);
  });

  it("recognises the paths it checks", () => {
    expect(citedPaths("see `workers/engine/README.md`, infra/k8s/ and shared/core/search/types.ts.")).toEqual([
      "workers/engine/README.md",
      "infra/k8s/",
      "shared/core/search/types.ts",
    ]);
    expect(citedPaths("runs/<run>/ and test/unit/engine-*.test.ts and apps/{a,b}")).toEqual([]);
  });
});
