#!/usr/bin/env bash
# Makes the local base image debian:bookworm-slim (no image can be pulled on these machines):
# debootstrap a minimal bookworm and import it. Does nothing when the image is already there.
set -euo pipefail
IMAGE=${1:-debian:bookworm-slim}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then exit 0; fi
command -v debootstrap >/dev/null || { echo "docker-base-image: apt-get install debootstrap" >&2; exit 1; }
dir=$(mktemp -d /var/tmp/cachesync-rootfs.XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "docker-base-image: debootstrap bookworm (about a minute)"
debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >/dev/null
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
tar -C "$dir" -c . | docker import - "$IMAGE" >/dev/null
echo "docker-base-image: $IMAGE ready"
