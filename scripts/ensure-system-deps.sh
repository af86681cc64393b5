#!/usr/bin/env bash
# Install the OS packages the project's scripts and tests need: the servers they start for real (redis-server,
# Prometheus and its promtool, Chromium for the dashboard test, docker-compose to validate the compose file), and
# the system Python with torch and onnx that writes the conformance fixtures (test/conformance/make_fixtures.py),
# and a Vulkan driver for the WebGPU tests (Mesa >= 25's software one, lavapipe, where there is no GPU: Dawn refuses
# bookworm's Mesa 22, so on bookworm it comes from bookworm-backports).
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
# Mesa's Vulkan drivers (with the Vulkan loader) at version 25 or later.
MESA_MIN=25
mesa_version="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
need_mesa=0
if [ -z "$mesa_version" ] || ! dpkg --compare-versions "$mesa_version" ge "$MESA_MIN"; then need_mesa=1; fi
[ ${#missing[@]} -eq 0 ] && [ $need_mesa -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "ensure-system-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
mesa_from=()
if [ $need_mesa -eq 1 ] && [ "$codename" = bookworm ]; then
  backports=/etc/apt/sources.list.d/bookworm-backports.list
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee "$backports" >/dev/null
  fi
  mesa_from=(-t bookworm-backports)
fi
echo "ensure-system-deps: installing ${missing[*]}${missing[*]:+ }$([ $need_mesa -eq 1 ] && echo "mesa-vulkan-drivers (>= $MESA_MIN)")" >&2
$SUDO apt-get update -qq >/dev/null
if [ ${#missing[@]} -gt 0 ]; then $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; fi
if [ $need_mesa -eq 1 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "${mesa_from[@]}" mesa-vulkan-drivers libvulkan1 >/dev/null
  mesa_version="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
  if ! dpkg --compare-versions "$mesa_version" ge "$MESA_MIN"; then
    echo "ensure-system-deps: mesa-vulkan-drivers is ${mesa_version:-missing} after installing; the WebGPU tests need >= $MESA_MIN" >&2
    exit 1
  fi
fi

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
