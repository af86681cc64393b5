/**
 * `stagebeam model export CHECKPOINT_DIR --out DIR [--dtype fp32|fp16|all]`: runs the Python
 * exporter (models/export/export.py, PyTorch + onnx, no transformers) on a Hugging Face
 * checkpoint folder, with $PYTHON or /usr/bin/python3. Its progress goes straight to the terminal.
 */
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Command, Option } from "commander";
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from "./common.ts";

const EXPORTER = fileURLToPath(new URL("../../../models/export/export.py", import.meta.url));

/** The python that runs the exporter, checked for the two packages it imports. */
function exporterPython(env: NodeJS.ProcessEnv): string {
  const python = env.PYTHON !== undefined && env.PYTHON !== "" ? env.PYTHON : "/usr/bin/python3";
  const probe = spawnSync(python, ["-c", "import torch, onnx"], { encoding: "utf8" });
  if (probe.error !== undefined || probe.status !== 0) {
    const why = probe.error?.message ?? probe.stderr.trim().split("\n").at(-1) ?? `exit ${probe.status}`;
    throw new CliExit(
      EXIT_USAGE,
      `the exporter needs Python with PyTorch and onnx; ${python} cannot import them (${why}). Install them (e.g. apt-get install python3-torch python3-onnx, or pip install torch onnx) or set PYTHON to a python that has them`,
    );
  }
  return python;
}

export const exportModelCommand = new Command("export")
  .description(
    "export a Hugging Face checkpoint folder (mllama: Llama-3.2-Vision, LLaVA-CoT) to an ONNX model folder the engine loads",
  )
  .argument(
    "<checkpoint>",
    "the checkpoint folder: config.json, *.safetensors (+ model.safetensors.index.json), tokenizer and processor files",
  )
  .requiredOption("--out <dir>", "the model folder to write")
  .addOption(new Option("--dtype <dtype>", "which ONNX files to write").choices(["fp32", "fp16", "all"]).default("fp32"))
  .addHelpText(
    "after",
    "\nPython: $PYTHON, else /usr/bin/python3, with PyTorch and onnx. See models/export/README.md for the folder contract\nand what an 11B export needs (disk, memory, time).",
  )
  .action(async (checkpoint: string, o: { out: string; dtype: string }) => {
    const python = exporterPython(process.env);
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn(python, [EXPORTER, checkpoint, "--out", o.out, "--dtype", o.dtype], { stdio: "inherit" });
      child.on("error", reject);
      child.on("exit", (c, signal) => resolve(c ?? (signal === null ? EXIT_FAILURE : 128)));
    });
    if (code !== 0) throw new CliExit(code === 1 ? EXIT_FAILURE : code, `export of ${checkpoint} failed (exit ${code})`);
  });
