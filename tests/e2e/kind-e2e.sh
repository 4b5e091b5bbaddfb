#!/usr/bin/env bash
# End-to-end on kind: two worker nodes, an in-cluster registry, cachesync installed with
# `kubectl apply -k`. Job 1 writes the cache on worker A; job 2 on worker B sees it (pulled
# from the registry); a pull-request job cannot write (the registry's tags do not move and a
# later reader does not see its change).
#
#   tests/e2e/kind-e2e.sh            needs: docker, kind, kubectl; pulls kindest/node, registry:2
#   KEEP=1 tests/e2e/kind-e2e.sh     keep the cluster afterwards (kind delete cluster --name ...)
#
# Every node's /var/lib/cachesync is a host directory mounted with Bidirectional propagation
# (buildah's overlay cannot sit on the kind node's own overlay root).
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${CLUSTER:-cachesync-e2e}
IMAGE=${IMAGE:-ghcr.io/cachesync/cachesync:e2e}
WORK=$(mktemp -d /tmp/cachesync-e2e.XXXXXX)
TOKEN="e2e-$(date +%s)-$RANDOM"
A="$CLUSTER-worker"
B="$CLUSTER-worker2"

log() { printf '\n== %s\n' "$*"; }
fail() { echo "E2E FAILED: $*" >&2; kubectl get events -A --sort-by=.lastTimestamp | tail -40 >&2 || true; exit 1; }
cleanup() {
  if [ "${KEEP:-0}" != 1 ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
for tool in docker kind kubectl; do command -v $tool >/dev/null || { echo "needs $tool"; exit 2; }; done

log "kind cluster $CLUSTER (1 control plane, 2 workers)"
mkdir -p "$WORK/a" "$WORK/b"
cat >"$WORK/kind.yaml" <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
    extraMounts:
      - {hostPath: $WORK/a, containerPath: /var/lib/cachesync, propagation: Bidirectional}
  - role: worker
    extraMounts:
      - {hostPath: $WORK/b, containerPath: /var/lib/cachesync, propagation: Bidirectional}
YAML
kind create cluster --name "$CLUSTER" --config "$WORK/kind.yaml" --wait 120s

log "image $IMAGE"
bash helper/fetch-wheels.sh build/wheels >/dev/null 2>&1 || true   # offline-friendly if it works
docker build -q -f helper/Dockerfile -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "install: kubectl apply -k (overlay: image, in-cluster registry over http)"
mkdir -p "$WORK/overlay"
cat >"$WORK/overlay/registry.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: registry, namespace: cachesync}
spec:
  selector: {matchLabels: {app: registry}}
  template:
    metadata: {labels: {app: registry}}
    spec:
      containers:
        - name: registry
          image: registry:2
          env: [{name: REGISTRY_STORAGE_DELETE_ENABLED, value: "true"}]
          ports: [{containerPort: 5000}]
---
apiVersion: v1
kind: Service
metadata: {name: registry, namespace: cachesync}
spec:
  selector: {app: registry}
  ports: [{port: 5000, targetPort: 5000}]
YAML
cat >"$WORK/overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$WORK/overlay" provisioner/deploy)
  - registry.yaml
images:
  - name: ghcr.io/cachesync/cachesync
    newName: ${IMAGE%:*}
    newTag: ${IMAGE##*:}
patches:
  - target: {kind: ConfigMap, name: cachesync-registry}
    patch: |
      - {op: replace, path: /data/CACHESYNC_REGISTRY, value: "registry.cachesync.svc.cluster.local:5000/cachesync"}
      - {op: replace, path: /data/CACHESYNC_INSECURE, value: "true"}
YAML
kubectl apply -k "$WORK/overlay"
kubectl apply -f provisioner/deploy/examples/namespaces.yaml
kubectl -n cachesync rollout status deploy/cachesync-provisioner --timeout=180s
kubectl -n cachesync rollout status deploy/registry --timeout=180s
kubectl -n cachesync rollout status ds/cachesync-sync --timeout=180s

job() {  # job <namespace> <name> <node> <script> [write-annotation]
  cat <<YAML | kubectl apply -f -
apiVersion: batch/v1
kind: Job
metadata: {name: $2, namespace: $1}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {kubernetes.io/hostname: $3}
      securityContext: {runAsUser: 1000, runAsGroup: 1000}
      containers:
        - name: build
          image: $IMAGE
          imagePullPolicy: Never
          command: [sh, -c, '$4']
          volumeMounts: [{name: cache, mountPath: /cache}]
      volumes:
        - name: cache
          ephemeral:
            volumeClaimTemplate:
              metadata:
                annotations: {cachesync.io/cache-name: gradle, cachesync.io/write: "${5:-true}"}
              spec:
                storageClassName: cachesync-ci
                accessModes: [ReadWriteOnce]
                resources: {requests: {storage: 1Gi}}
YAML
  kubectl -n "$1" wait --for=condition=complete "job/$2" --timeout=300s || fail "job $1/$2"
}
volumes_gone() {  # every cachesync PV torn down and deleted
  for _ in $(seq 1 120); do
    [ -z "$(kubectl get pv -o name -l app.kubernetes.io/managed-by=cachesync-provisioner)" ] && return 0
    sleep 2
  done
  fail "cachesync PVs still present: $(kubectl get pv)"
}
tags() {
  kubectl -n cachesync exec deploy/registry -- \
    wget -qO- http://localhost:5000/v2/cachesync/ci/gradle/tags/list 2>/dev/null || true
}
published() {  # wait until the registry has a tag list different from $1
  for _ in $(seq 1 120); do
    t=$(tags); [ -n "$t" ] && [ "$t" != "$1" ] && { echo "$t"; return 0; }; sleep 2
  done
  fail "nothing published to the registry"
}

log "job 1 on $A writes the cache"
before=$(tags)
job ci write-a "$A" "echo $TOKEN > /cache/token"
volumes_gone
after=$(published "$before")
echo "registry tags: $after"

log "job 2 on $B reads it (pulled from the registry)"
job ci read-b "$B" "cat /cache/token"
got=$(kubectl -n ci logs job/read-b)
[ "$got" = "$TOKEN" ] || fail "job 2 on $B saw '$got', expected '$TOKEN'"
volumes_gone

log "a pull-request job (namespace ci-pr) asks to write and cannot"
job ci-pr pr "$B" "cat /cache/token && echo pr > /cache/token" true
kubectl get events -n ci-pr --field-selector reason=WriteDenied | grep -q WriteDenied \
  || fail "no WriteDenied event for the PR claim"
volumes_gone
sleep 10
[ "$(tags)" = "$after" ] || fail "the PR job changed the registry: $(tags)"
job ci read-a "$A" "cat /cache/token"
[ "$(kubectl -n ci logs job/read-a)" = "$TOKEN" ] || fail "the PR job's write leaked into the cache"

log "events (kubectl describe tells the story)"
kubectl get events -A --field-selector source=cachesync-provisioner --sort-by=.lastTimestamp | tail -30
log "E2E PASSED"
