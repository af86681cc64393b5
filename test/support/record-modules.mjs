/**
 * `node --import tsx --import ./test/support/record-modules.mjs …`: appends the URL of every
 * module the process resolves to the file RECORD_MODULES_TO names, one a line. Registered after
 * tsx, its hook sees the URLs tsx resolves .ts imports to.
 */
import { register } from "node:module";

register("./record-modules-hooks.mjs", import.meta.url, { data: { file: process.env.RECORD_MODULES_TO } });
