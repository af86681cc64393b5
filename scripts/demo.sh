#!/usr/bin/env bash
# `npm run demo`: sets itself up on a fresh machine (npm dependencies, redis-server from the OS
# packages), then runs the whole fleet locally: `stagebeam demo` (private Redis, embedded S3,
# two workers, the bundled sample scenes). Extra arguments go to `stagebeam demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
exec npx tsx apps/cli/main.ts demo "$@"
