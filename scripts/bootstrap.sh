#!/usr/bin/env bash
# Installs what cachesync needs on a Debian 12 machine (as root), idempotently:
# the apt packages, then a venv at .venv with cachesync and its test extra.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  buildah skopeo docker-registry fuse-overlayfs   # node core and the local registry
  docker.io docker-compose debootstrap            # images and compose tests
  iproute2 curl zstd ca-certificates python3-venv # network-fault tests, tools
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's docker-registry package starts nothing without systemd; tests start their own.

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.cachesync-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing cachesync into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
