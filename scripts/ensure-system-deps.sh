#!/usr/bin/env bash
# Install the OS packages the project's scripts and tests start as real servers.
# Idempotent and quiet when everything is already there; needs root (or sudo) and
# access to the Debian package mirrors when something is missing.
set -euo pipefail

# command on PATH -> Debian package that provides it
declare -A NEEDED=(
  [redis-server]=redis-server
)

missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "ensure-system-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "ensure-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for cmd in "${!NEEDED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "ensure-system-deps: $cmd still not on PATH after installing ${NEEDED[$cmd]}" >&2
    exit 1
  fi
done
