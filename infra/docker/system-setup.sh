#!/bin/sh
# The runtime image's system part, run as root in its base (Debian's node image, NVIDIA's CUDA
# image, or the local build's Debian root filesystem): tini as PID 1, CA certificates, the
# unprivileged user (uid/gid 10001) the processes run as, and the model cache it owns. With
# VULKAN_LOADER=1 (the GPU image) also the Vulkan loader, through which onnxruntime-node's WebGPU
# provider (Dawn) reaches the GPU driver's Vulkan part (the NVIDIA container toolkit mounts that
# part when NVIDIA_DRIVER_CAPABILITIES includes graphics).
# Shared by the Dockerfile and scripts/image-build-local.sh.
set -eu
packages="tini ca-certificates"
[ "${VULKAN_LOADER:-0}" = 1 ] && packages="$packages libvulkan1"
missing=""
for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # a list of package names
  apt-get install -y -qq --no-install-recommends $missing
  rm -rf /var/lib/apt/lists/*
fi
grep -q '^stagebeam:' /etc/group || echo 'stagebeam:x:10001:' >>/etc/group
grep -q '^stagebeam:' /etc/passwd || echo 'stagebeam:x:10001:10001:stagebeam:/home/stagebeam:/usr/sbin/nologin' >>/etc/passwd
mkdir -p /home/stagebeam /var/cache/stagebeam/models
chown -R 10001:10001 /home/stagebeam /var/cache/stagebeam
