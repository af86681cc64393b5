#!/bin/sh
# Drops what the image never loads from a production node_modules (the folder given): the
# ONNX Runtime binaries of other operating systems and CPU architectures (about 200 MB).
# Shared by the Dockerfile and scripts/image-build-local.sh.
set -eu
modules="$1"
arch="$(node -p process.arch)"
ort="$modules/onnxruntime-node/bin/napi-v6"
rm -rf "$ort/darwin" "$ort/win32"
find "$ort/linux" -mindepth 1 -maxdepth 1 ! -name "$arch" -exec rm -rf {} +
