"""Logging set-up for the entry point: text for people, JSON lines for the daemon.

Modules log with ``logging.getLogger(__name__)`` and pass context as ``extra={"cache": ...,
"digest": ..., "node": ...}``; only ``configure`` (called from main) installs handlers.
"""

from __future__ import annotations

import json
import logging
import sys
import time

CONTEXT_KEYS = ("node", "cache", "generation", "digest", "volume", "bytes", "seconds", "event")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info and record.exc_info[1] is not None:
            out["error"] = str(record.exc_info[1])
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_KEYS if hasattr(record, k))
        line = f"cachesync: {record.getMessage()}"
        return f"{line} [{context}]" if context else line


def configure(fmt: str = "text", verbose: int = 0) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose or fmt == "json"
                  else logging.INFO)
    for noisy in ("urllib3", "oras", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
