/** The stagebeam version, as package.json states it: `--version` prints it and every process exports it in stagebeam_build_info. */
import { readFileSync } from "node:fs";

export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;
