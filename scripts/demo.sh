#!/usr/bin/env bash
# The cachesync story on one machine (as root), with nothing else set up:
# a local registry, two nodes (two state roots), a cache written through a volume on node A,
# published, then used through a volume on node B, which pulls only what it lacks.
# Everything lives under .demo/ and is removed at the end (also on failure or Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CS="$REPO/.venv/bin/cachesync"
DEMO="$REPO/.demo"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  set +e
  for v in a b; do
    [ -f "$DEMO/env-$v" ] && (set -a; . "$DEMO/env-$v"; "$CS" helper teardown >/dev/null 2>&1)
  done
  [ -n "${REG_PID:-}" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
  if [ -d "$DEMO" ]; then
    awk -v d="$DEMO" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo \
      | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$DEMO"
  fi
}
trap cleanup EXIT INT TERM

[ "$(id -u)" = 0 ] || { echo "demo: run as root (it mounts filesystems and runs buildah)" >&2; exit 1; }
cleanup
mkdir -p "$DEMO/registry"

say "1. A local OCI registry (docker-registry, plain http on 127.0.0.1, temporary storage)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$DEMO/registry/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $DEMO/registry/data}
  delete: {enabled: true}
http: {addr: "127.0.0.1:$PORT"}
EOF
/usr/bin/docker-registry serve "$DEMO/registry/config.yml" >"$DEMO/registry/log" 2>&1 &
REG_PID=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
echo "registry at 127.0.0.1:$PORT (prefix demo)"
export CACHESYNC_REGISTRY="127.0.0.1:$PORT/demo" CACHESYNC_INSECURE=true

node() {  # node a|b: the environment of that node
  echo "CACHESYNC_ROOT=$DEMO/node-$1 CACHESYNC_NODE_ID=$1"
}
volume() {  # volume a|b writable: write the helper variables of that node's volume
  cat > "$DEMO/env-$1" <<EOF
$(node "$1" | tr ' ' '\n')
VOL_DIR=$DEMO/vol-$1
VOL_NAME=demo-$1
VOL_MODE=Filesystem
PVC_NAMESPACE=team
PVC_NAME=maven
CACHE_WRITE=$2
JOB_RESULT=succeeded
EOF
}
on() {  # on a|b CMD...: run cachesync as that node (with its volume's variables)
  local n=$1; shift
  (set -a; . "$DEMO/env-$n"; "$CS" "$@")
}

say "2. Node A: a job gets a writable volume of cache team/maven (empty so far)"
volume a true
on a helper setup
echo "the job writes its build cache:"
mkdir -p "$DEMO/vol-a/repository/org/demo"
head -c 4M /dev/urandom > "$DEMO/vol-a/repository/org/demo/lib-1.0.jar"
echo "built on node A at $(date -u +%H:%M:%S)" > "$DEMO/vol-a/BUILD-INFO"
SUM=$(sha256sum "$DEMO/vol-a/repository/org/demo/lib-1.0.jar" | cut -d' ' -f1)
ls -lR "$DEMO/vol-a" | sed 's/^/  /'

say "3. Node A: the job succeeded; teardown commits its changes as the next generation"
on a helper teardown
rm -f "$DEMO/env-a"

say "4. Node A: cachesync sync --once publishes the commit (blobs, manifest, tags)"
volume a false
on a sync --once
rm -f "$DEMO/env-a"

say "5. Node B (a different state root: nothing in common with A) sets up the same cache"
echo "it finds a newer generation in the registry and pulls it first (lazy pull):"
volume b false
on b -v helper setup
echo "what the job on node B sees:"
ls -lR "$DEMO/vol-b" | sed 's/^/  /'
echo "BUILD-INFO says: $(cat "$DEMO/vol-b/BUILD-INFO")"
[ "$(sha256sum "$DEMO/vol-b/repository/org/demo/lib-1.0.jar" | cut -d' ' -f1)" = "$SUM" ] \
  && echo "the 4 MiB jar arrived intact (same sha256 as written on A)"
on b helper teardown
rm -f "$DEMO/env-b"

say "6. cachesync status on both nodes (local and remote generation, pending publishes)"
volume a false; echo "-- node A"; on a status; rm -f "$DEMO/env-a"
volume b false; echo "-- node B"; on b status; rm -f "$DEMO/env-b"

say "Done: a cache written on node A was used on node B through the registry. Cleaning up."
