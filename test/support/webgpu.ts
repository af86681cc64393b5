/**
 * The WebGPU execution provider on whatever Vulkan device the machine has: on a CPU-only
 * machine, Mesa's software driver (lavapipe, installed by scripts/ensure-system-deps.sh). Dawn
 * wants XDG_RUNTIME_DIR; a private one is made when it is unset.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/** Sets XDG_RUNTIME_DIR for this process and its children when unset; returns the environment to give children. */
export function webgpuEnv(): Record<string, string> {
  process.env.XDG_RUNTIME_DIR ??= mkdtempSync(path.join(tmpdir(), "stagebeam-xdg-"));
  return { XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR };
}

/** Throws, saying what is missing, unless the engine's decoder really runs on WebGPU with its KV on the device. */
export function expectWebgpu(info: {
  providers: { decoder: string };
  kvPlace: string;
  providerFailures: Record<string, string>;
}): void {
  if (info.providers.decoder !== "webgpu" || info.kvPlace !== "device") {
    throw new Error(
      `the decoder runs on ${info.providers.decoder} with its KV in ${info.kvPlace} memory, not on WebGPU (${
        info.providerFailures.webgpu ?? "no failure reported"
      }); a Vulkan driver is needed: scripts/ensure-system-deps.sh installs Mesa's from bookworm-backports`,
    );
  }
}
