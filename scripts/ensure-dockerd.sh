#!/usr/bin/env bash
# Starts the Docker engine if it is installed and not running (machines here have no systemd).
# Publishing is on 127.0.0.1 only; the tests never talk to the bridge network.
set -u
command -v dockerd >/dev/null || { echo "ensure-dockerd: dockerd not installed"; exit 0; }
if docker info >/dev/null 2>&1; then exit 0; fi
mkdir -p /var/log
nohup dockerd --ip 127.0.0.1 >/var/log/cachesync-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && { echo "ensure-dockerd: dockerd is up"; exit 0; }
  sleep 1
done
echo "ensure-dockerd: dockerd did not come up; see /var/log/cachesync-dockerd.log" >&2
tail -5 /var/log/cachesync-dockerd.log >&2
exit 1
