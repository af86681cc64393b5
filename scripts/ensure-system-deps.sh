#!/usr/bin/env bash
# Install the OS packages the project's scripts and tests need: the servers they start for real (redis-server,
# Prometheus and its promtool, Chromium for the dashboard test, docker-compose to validate the compose file), and
# the system Python with torch and onnx that writes the conformance fixtures (test/conformance/make_fixtures.py).
# Idempotent and quiet when everything is already there; needs root (or sudo) and
# access to the Debian package mirrors when something is missing.
set -euo pipefail

# command on PATH -> Debian package that provides it
declare -A NEEDED=(
  [redis-server]=redis-server
  [prometheus]=prometheus
  [promtool]=prometheus
  [chromium]=chromium
  [docker-compose]=docker-compose
)

# /usr/bin/python3 module -> Debian package that provides it
declare -A PYTHON_MODULES=(
  [torch]=python3-torch
  [onnx]=python3-onnx
)

missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
for module in "${!PYTHON_MODULES[@]}"; do
  /usr/bin/python3 -c "import $module" >/dev/null 2>&1 || missing+=("${PYTHON_MODULES[$module]}")
done
# libtorch takes any libblas.so.3; the fixtures' bytes were checked with OpenBLAS behind it.
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || missing+=(libopenblas0-pthread)
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
for module in "${!PYTHON_MODULES[@]}"; do
  if ! /usr/bin/python3 -c "import $module" >/dev/null 2>&1; then
    echo "ensure-system-deps: /usr/bin/python3 still cannot import $module after installing ${PYTHON_MODULES[$module]}" >&2
    exit 1
  fi
done
