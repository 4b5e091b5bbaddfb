"""Prometheus metrics of the sync service, on a registry of their own (served by the daemon)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .errors import ConfigError

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
BYTES_PUSHED = Counter("cachesync_bytes_pushed", "Blob bytes uploaded to the registry",
                       registry=REGISTRY)
BYTES_PULLED = Counter("cachesync_bytes_pulled", "Blob bytes downloaded from the registry",
                       registry=REGISTRY)
COMMITS_PUBLISHED = Counter("cachesync_commits_published", "Journaled commits published",
                            registry=REGISTRY)
PUSHES_PENDING = Gauge("cachesync_pushes_pending", "Journaled commits waiting to be published",
                       registry=REGISTRY)
FAILURES = Counter("cachesync_failures", "Failed operations", ["operation"], registry=REGISTRY)
DURATION = Histogram("cachesync_operation_seconds", "Duration of operations", ["operation"],
                     buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600), registry=REGISTRY)


def serve(address: str) -> object | None:
    """Serve /metrics on ``host:port``; '' serves nothing. Returns the server (to shut down)."""
    if not address:
        return None
    host, _, port = address.rpartition(":")
    try:
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1",
                                            registry=REGISTRY)
    except (ValueError, OSError) as e:
        raise ConfigError(f"cannot serve metrics on {address!r}: {e}") from e
    log.info("serving metrics on http://%s/metrics", address, extra={"event": "metrics"})
    return server
