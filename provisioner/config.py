"""The controller's settings: one typed value with a documented default per field, built once in
``main`` from flags and environment and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    namespace: str = "cachesync"                    # where helper Pods run (privileged namespace)
    helper_image: str = "ghcr.io/cachesync/cachesync:0.1.0"  # image with the `cachesync` CLI
    image_pull_policy: str = "IfNotPresent"
    helper_service_account: str = "cachesync-helper"  # no API access; token not mounted
    registry_config_map: str = "cachesync-registry"   # CACHESYNC_* settings for lazy pull on setup
    registry_secret: str = "cachesync-registry"       # CACHESYNC_REGISTRY_USERNAME/PASSWORD
    node_root: str = "/var/lib/cachesync"             # node state root (hostPath)
    volume_base: str = "/var/lib/cachesync/pv"        # volumes appear at <volume_base>/<pv name>
    helper_timeout: float = 600.0                     # seconds a helper Pod may take in all
    helper_attempts: int = 5                          # failed helper Pods before giving up
    retry_base: float = 10.0                          # first backoff after a failed helper, s
    retry_max: float = 300.0                          # longest backoff, s
    resync_interval: float = 60.0                     # full re-list of everything, s
    poll_interval: float = 5.0                        # re-check of a running helper Pod, s

    def backoff(self, failures: int) -> float:
        """Seconds to wait before the next helper after ``failures`` failed ones (>= 1)."""
        return min(self.retry_max, self.retry_base * 2 ** max(0, failures - 1))
