#!/usr/bin/env bash
# Builds the images of docker-compose.yml locally. Python packages are fetched on the host (pip,
# with the host's index and certificates) into build/wheels, and the node image installs them
# with --no-index: the image build itself needs only Debian's apt mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/pip}
rm -rf build/wheels
# fixed timestamps: the same sources give the same wheel, so Docker reuses its cached layer
SOURCE_DATE_EPOCH=315532800 "$PIP" wheel -q --wheel-dir build/wheels .
docker image inspect debian:bookworm-slim >/dev/null 2>&1 || bash scripts/docker-base-image.sh
docker-compose "$@" build
