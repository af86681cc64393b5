#!/usr/bin/env node
// The installed `stagebeam` command (npm link, npm install -g): the CLI is TypeScript, run
// through tsx, so a clone needs no build step.
import { register } from "tsx/esm/api";

register();
await import("./main.ts");
