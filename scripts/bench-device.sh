#!/usr/bin/env bash
# `npm run bench:device`: KV on the device vs through host memory (test/bench/device.ts) on the WebGPU provider.
# Checks first for what it needs, so that a bare GPU machine says what to install instead of failing half-way:
# Node 20+, the project's npm packages, the Vulkan loader (libvulkan.so.1) and a Vulkan driver (an ICD file:
# NVIDIA's driver installs nvidia_icd.json; without a GPU, Mesa's lavapipe). Arguments go to the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
problems=()
if ! command -v node >/dev/null 2>&1; then
  problems+=("Node.js 20 or later (not on PATH): e.g. the stagebeam image, or https://nodejs.org/ binaries")
elif [ "$(node -p 'Number(process.versions.node.split(".")[0])')" -lt 20 ]; then
  problems+=("Node.js 20 or later (found $(node --version))")
fi
[ -d node_modules/onnxruntime-node ] || problems+=("the npm packages: run npm ci")
if ! { ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; } && ! [ -e /usr/lib/x86_64-linux-gnu/libvulkan.so.1 ]; then
  problems+=("the Vulkan loader libvulkan.so.1: apt-get install libvulkan1")
fi
icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null || true)
if [ -z "$icds" ]; then
  problems+=("a Vulkan driver (no ICD file in /usr/share/vulkan/icd.d or /etc/vulkan/icd.d): the NVIDIA driver with its Vulkan part (in a container: NVIDIA_DRIVER_CAPABILITIES must include graphics), or mesa-vulkan-drivers >= 25 for the software one")
fi
if [ ${#problems[@]} -gt 0 ]; then
  echo "bench:device cannot run here; missing:" >&2
  for p in "${problems[@]}"; do echo "  - $p" >&2; done
  exit 2
fi
echo "Vulkan drivers: $(echo "$icds" | xargs -n1 basename | tr '\n' ' ')"
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"
  export XDG_RUNTIME_DIR
fi
exec npx tsx test/bench/device.ts "$@"
