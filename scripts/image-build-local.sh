#!/usr/bin/env bash
# `npm run image:build-local`: builds infra/docker/Dockerfile's runtime image on a machine with
# no container registry and no way to run containers, then checks what is inside it.
#
#   1. a Debian 12 root filesystem with mmdebstrap (from the Debian mirror), put in shape by
#      infra/docker/system-setup.sh, the script the Dockerfile's system stage runs;
#   2. this machine's node binary and a production node_modules (the installed packages that
#      `npm ls --omit=dev` lists, trimmed by infra/docker/prune-node-modules.sh as the deps
#      stage does; npm prune would ask the registry);
#   3. both as `FROM scratch` images, and the Dockerfile's runtime stage on top of them
#      (--build-arg SYSTEM/DEPS; that stage only copies, so no RUN is needed);
#   4. a container created (not started) from it, mounted, and the image's own node run in a
#      chroot of that filesystem as the image's user: --help, tini, `model check` of the bundled
#      model, one `ask`, a worker that refuses a missing REDIS_URL with exit code 2, and a
#      worker against a redis-server started here (ready, /metrics, SIGTERM, exit 0).
#
# Needs root; installs podman, mmdebstrap and redis-server when missing. Takes a few minutes; the root filesystem is cached in
# .work/image. Prints the image size at the end. IMAGE_TAG overrides localhost/stagebeam:local.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh image

work=.work/image
tag=${IMAGE_TAG:-localhost/stagebeam:local}
podman=(podman --storage-driver=vfs)
build=(build --isolation=chroot --pull=never --layers=false)
mkdir -p "$work"
say() { printf '\n== %s\n' "$*" >&2; }

# 1. The root filesystem, cached by its recipe.
packages=ca-certificates,libstdc++6,tini
recipe=$(printf '%s\n' bookworm "$packages" "$(sha256sum infra/docker/system-setup.sh)" | sha256sum | cut -c1-12)
rootfs=$work/rootfs-$recipe.tar
if [ ! -f "$rootfs" ]; then
  say "mmdebstrap: Debian 12 (essential + $packages)"
  mmdebstrap --quiet --variant=essential --include="$packages" --format=tar \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='cp infra/docker/system-setup.sh "$1/tmp/" && chroot "$1" sh /tmp/system-setup.sh && rm "$1/tmp/system-setup.sh"' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    bookworm "$rootfs.partial" http://deb.debian.org/debian
  mv "$rootfs.partial" "$rootfs"
fi

# 2. node and the production dependencies.
say "node $(node --version) and production node_modules"
ctx=$work/context
rm -rf "$ctx"
mkdir -p "$ctx/system/usr/local/bin" "$ctx/deps/app"
cp "$rootfs" "$ctx/system/rootfs.tar"
cp "$(readlink -f "$(command -v node)")" "$ctx/system/usr/local/bin/node"
# The installed production packages (npm ls, which needs no registry), each with what it holds;
# the packages nested in them are theirs. npm ls exits 1 on a tree that differs from the
# lockfile, yet lists it.
modules=$(readlink -f node_modules)
{ npm ls --omit=dev --all --parseable 2>/dev/null || true; } |
  sed -n "s#^$PWD/node_modules/##p" | grep -v '/node_modules/' >"$work/production-packages.txt"
mkdir -p "$ctx/deps/app/node_modules"
tar -C "$modules" -cf - -T "$work/production-packages.txt" | tar -C "$ctx/deps/app/node_modules" -xf -
sh infra/docker/prune-node-modules.sh "$ctx/deps/app/node_modules"
printf 'FROM scratch\nADD rootfs.tar /\nCOPY usr/local/bin/node /usr/local/bin/node\n' >"$ctx/system/Containerfile"
printf 'FROM scratch\nCOPY app/node_modules /app/node_modules\n' >"$ctx/deps/Containerfile"

# 3. The images.
say "podman build: system, deps, then the Dockerfile's runtime stage"
previous=$("${podman[@]}" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
"${podman[@]}" "${build[@]}" -t localhost/stagebeam-local-system "$ctx/system"
"${podman[@]}" "${build[@]}" -t localhost/stagebeam-local-deps "$ctx/deps"
"${podman[@]}" "${build[@]}" -f infra/docker/Dockerfile --target runtime \
  --build-arg SYSTEM=localhost/stagebeam-local-system --build-arg DEPS=localhost/stagebeam-local-deps -t "$tag" .
rm -rf "$ctx"
# Only the final image keeps its name (its layers hold what the other two held).
"${podman[@]}" rmi --ignore localhost/stagebeam-local-system localhost/stagebeam-local-deps >/dev/null
# A rebuild leaves the previous image nameless; every image is a full copy with vfs.
if [ -n "$previous" ] && [ "$previous" != "$("${podman[@]}" image inspect --format '{{.Id}}' "$tag")" ]; then
  "${podman[@]}" rmi "$previous" >/dev/null
fi

# 4. Look inside: a container's filesystem (a copy; the image stays as built), chrooted.
say "checking the image's filesystem"
container=$("${podman[@]}" create "$tag")
mnt=$("${podman[@]}" mount "$container")
cleanup() {
  [ -z "${redis_pid:-}" ] || kill "$redis_pid" 2>/dev/null || true
  umount "$mnt/proc" 2>/dev/null || true
  umount "$mnt/dev" 2>/dev/null || true
  "${podman[@]}" umount "$container" >/dev/null 2>&1 || true
  "${podman[@]}" rm "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT
mount -t proc proc "$mnt/proc"
mount --bind /dev "$mnt/dev"

config=$("${podman[@]}" image inspect --format '{{.Config.User}} {{json .Config.Entrypoint}} {{.Config.WorkingDir}}' "$tag")
echo "user, entrypoint, workdir: $config"
[ "$config" = '10001:10001 ["/usr/bin/tini","--","/usr/local/bin/node","/app/apps/cli/bin.js"] /app' ]

# As the image runs it: its user, its environment, in /app.
in_image() {
  chroot --userspec=10001:10001 "$mnt" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/stagebeam \
    NODE_ENV=production MODEL_CACHE_DIR=/var/cache/stagebeam/models /bin/sh -c "cd /app && $*"
}
in_image '/usr/bin/tini -s -- node apps/cli/bin.js --version'
in_image 'node apps/cli/bin.js --help' | sed -n 1,5p
in_image 'node apps/cli/bin.js model check models/stagebeam-tiny' | tail -4
in_image 'node apps/cli/bin.js ask --image models/stagebeam-tiny/golden/image.png --question "What shape is the yellow object? Options: A. circle B. triangle C. square" --beam 2' | tail -3
set +e
in_image 'node apps/cli/bin.js worker' 2>"$work/worker-stderr.txt"
code=$?
set -e
cat "$work/worker-stderr.txt"
[ "$code" -eq 2 ] && grep -q 'REDIS_URL: missing' "$work/worker-stderr.txt"
# The worker role for real: the image's worker, on the host's network, against a redis-server
# started here; ready line, /metrics, then SIGTERM and exit 0.
free_port() { node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
redis_pid=$!
metrics_port=$(free_port)
in_image "REDIS_URL=redis://127.0.0.1:$redis_port S3_BUCKET=stagebeam S3_ENDPOINT=http://127.0.0.1:9 METRICS_PORT=$metrics_port exec node apps/cli/bin.js worker" \
  >"$work/worker-stdout.txt" 2>"$work/worker-stderr.txt" &
worker_pid=$!
for _ in $(seq 120); do grep -q '"event":"ready"' "$work/worker-stdout.txt" && break; sleep 1; done
grep '"event":"ready"' "$work/worker-stdout.txt" || { cat "$work/worker-stderr.txt" >&2; exit 1; }
node -e "fetch('http://127.0.0.1:$metrics_port/metrics').then(async (r) => { const t = await r.text(); if (!t.includes('stagebeam_')) process.exit(1); console.log('worker /metrics: ' + t.split('\n').filter((l) => l.startsWith('stagebeam_')).length + ' stagebeam_ samples'); })"
# $worker_pid is the shell running in_image; the worker is the node process it ends in.
kill -TERM "$(sed -n 's/.*"event":"ready".*"pid":\([0-9]*\).*/\1/p' "$work/worker-stdout.txt")"
set +e
wait "$worker_pid"
code=$?
set -e
kill "$redis_pid"
[ "$code" -eq 0 ] || { echo "worker exited $code after SIGTERM" >&2; tail -5 "$work/worker-stderr.txt" >&2; exit 1; }
echo "worker: ready, served /metrics, stopped on SIGTERM with exit code 0"

for gone in test .git scripts models/training; do
  [ ! -e "$mnt/app/$gone" ] || { echo "image holds /app/$gone; .dockerignore should keep it out" >&2; exit 1; }
done
in_image 'test -w /var/cache/stagebeam/models && ! test -w /app/package.json' || {
  echo "expected the model cache writable and the sources read-only for uid 10001" >&2
  exit 1
}

size=$("${podman[@]}" image inspect --format '{{.Size}}' "$tag")
say "built $tag: $((size / 1000000)) MB ($(du -sh --apparent-size "$mnt/app/node_modules" | cut -f1) of it node_modules)"
