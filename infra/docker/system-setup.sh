#!/bin/sh
# The runtime image's system part, run as root in its base (Debian's node image, NVIDIA's CUDA
# image, or the local build's Debian root filesystem): tini as PID 1, CA certificates, the
# unprivileged user (uid/gid 10001) the processes run as, and the model cache it owns.
# Shared by the Dockerfile and scripts/image-build-local.sh.
set -eu
if ! command -v tini >/dev/null 2>&1 || [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends tini ca-certificates
  rm -rf /var/lib/apt/lists/*
fi
grep -q '^stagebeam:' /etc/group || echo 'stagebeam:x:10001:' >>/etc/group
grep -q '^stagebeam:' /etc/passwd || echo 'stagebeam:x:10001:10001:stagebeam:/home/stagebeam:/usr/sbin/nologin' >>/etc/passwd
mkdir -p /home/stagebeam /var/cache/stagebeam/models
chown -R 10001:10001 /home/stagebeam /var/cache/stagebeam
