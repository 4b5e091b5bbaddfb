#!/usr/bin/env bash
# Builds the images of docker-compose.yml locally: the registry (registry-config/Dockerfile) and
# the cachesync node (helper/Dockerfile). Python wheels are fetched on the host first
# (helper/fetch-wheels.sh, into build/wheels), so the image builds need only Debian's apt mirror.
#   bash registry-config/build-images.sh [docker-compose options, e.g. -p project]
set -euo pipefail
cd "$(dirname "$0")/.."
bash helper/fetch-wheels.sh build/wheels
docker image inspect debian:bookworm-slim >/dev/null 2>&1 || bash scripts/docker-base-image.sh
docker-compose "$@" build
