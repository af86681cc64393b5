#!/usr/bin/env bash
# `npm test`: sets itself up on a fresh machine, then runs every suite (unit and integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
npx tsc --noEmit -p .
# Formatting and lint (Biome): `npm run format` fixes the formatting.
npx biome check .
npx vitest run "$@"
