#!/usr/bin/env bash
# Fetches, on the host (its pip index and certificates), wheels of cachesync's dependencies and
# of setuptools into a directory (default build/wheels), so `docker build -f helper/Dockerfile`
# installs them with --no-index: the image build then needs only Debian's apt mirror.
#   bash helper/fetch-wheels.sh [dir]     then: docker build --build-arg WHEELS=<dir> ...
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-build/wheels}
PIP=${PIP:-.venv/bin/pip}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
req=$(mktemp)
trap 'rm -f "$req"' EXIT
"$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' >"$req"
echo "setuptools>=70.1" >>"$req"
"$PIP" wheel -q --wheel-dir "$DIR" -r "$req" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
ls "$DIR"/*.whl >/dev/null
