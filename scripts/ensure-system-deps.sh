#!/usr/bin/env bash
# Installs the OS packages that one or more needs require, and no others:
#
#   scripts/ensure-system-deps.sh demo     # npm run demo
#   scripts/ensure-system-deps.sh image    # npm run image:build-local
#   scripts/ensure-system-deps.sh test     # npm test (the default)
#
# Idempotent and quiet when everything is already there; needs root (or sudo) and access to the
# Debian package mirrors when something is missing.
set -euo pipefail

# One list per need, one requirement an entry:
#   cmd:NAME:PACKAGE      NAME on PATH, from the Debian package PACKAGE
#   py:MODULE:PACKAGE     /usr/bin/python3 imports MODULE, from PACKAGE
#   pkg:PACKAGE           the package itself is installed (dpkg -s)

# The demo's private Redis.
NEED_demo=(
  cmd:redis-server:redis-server
)

# The image build: mmdebstrap writes the root filesystem, podman builds it, and the check at the end
# runs the image's worker against a redis-server started on the host.
NEED_image=(
  cmd:podman:podman
  cmd:mmdebstrap:mmdebstrap
  cmd:redis-server:redis-server
)

# The suites: the servers they start for real (redis-server, Prometheus and its promtool, Chromium for the
# dashboard test, docker-compose to validate the compose file), and the system Python with torch and onnx
# that writes the conformance fixtures (test/conformance/make_fixtures.py).
NEED_test=(
  cmd:redis-server:redis-server
  cmd:prometheus:prometheus
  cmd:promtool:prometheus
  cmd:chromium:chromium
  cmd:docker-compose:docker-compose
  py:torch:python3-torch
  py:onnx:python3-onnx
  # libtorch takes any libblas.so.3; the fixtures' bytes were checked with OpenBLAS behind it.
  pkg:libopenblas0-pthread
)

present() {
  local kind=${1%%:*} rest=${1#*:}
  case $kind in
    cmd) command -v "${rest%%:*}" >/dev/null 2>&1 ;;
    py) /usr/bin/python3 -c "import ${rest%%:*}" >/dev/null 2>&1 ;;
    pkg) dpkg -s "$rest" >/dev/null 2>&1 ;;
    *)
      echo "ensure-system-deps: bad entry '$1'" >&2
      exit 2
      ;;
  esac
}
package_of() { echo "${1##*:}"; }

[ $# -gt 0 ] || set -- test
entries=()
for need in "$@"; do
  list="NEED_${need//[^a-z]/_}[@]"
  if ! declare -p "NEED_${need//[^a-z]/_}" >/dev/null 2>&1; then
    echo "ensure-system-deps: unknown need '$need'; expected demo, image or test" >&2
    exit 2
  fi
  entries+=("${!list}")
done

missing=()
for entry in "${entries[@]}"; do
  present "$entry" || missing+=("$(package_of "$entry")")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "ensure-system-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "ensure-system-deps ($*): installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for entry in "${entries[@]}"; do
  present "$entry" || {
    echo "ensure-system-deps: '${entry}' still not met after installing $(package_of "$entry")" >&2
    exit 1
  }
done
