#!/usr/bin/env bash
# Makes a fresh clone runnable for one or more needs (demo, image, test; see ensure-system-deps.sh):
# the npm dependencies and the OS packages those needs require, and no others.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
# A node_modules that is a link belongs to another checkout (a git worktree sharing its
# dependencies): npm ci would empty that checkout's folder through the link, so leave it alone.
if [ -L node_modules ]; then
  :
elif [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# npm may skip install scripts; fail early and clearly if a native package cannot load.
node -e "require('sharp'); require('onnxruntime-node')" || {
  echo "setup: sharp or onnxruntime-node does not load; try 'rm -rf node_modules && npm ci'" >&2
  exit 1
}
bash scripts/ensure-system-deps.sh "$@"
