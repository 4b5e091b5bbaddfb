"""A tiny HTTP server speaking enough of the Kubernetes API for adapter tests: canned responses
per (method, path), every request recorded (headers lower-cased, JSON bodies parsed). A watch
(GET with ?watch=) is routed as method "WATCH"; with no route it gets an empty stream after a
short pause (the server ending the watch)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator


def status(code: int, reason: str, message: str) -> tuple[int, dict]:
    return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                  "message": message, "reason": reason, "code": code}


class Api:
    """Routes: (method, path) -> responses served in order, the last one repeated."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list] = {}
        self.requests: list[dict[str, Any]] = []
        self.url = ""

    def on(self, method: str, path: str, *responses: tuple[int, Any]) -> None:
        self.routes[(method, path)] = list(responses)

    def sent(self, method: str) -> list[dict[str, Any]]:
        return [r for r in list(self.requests) if r["method"] == method]


@contextlib.contextmanager
def serve(host: str = "127.0.0.1") -> Iterator[Api]:
    state = Api()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            state.requests.append({"method": self.command, "path": path, "query": query,
                                   "headers": {k.lower(): v for k, v in self.headers.items()},
                                   "body": json.loads(body) if body else None})
            watching = self.command == "GET" and "watch=" in query.lower()
            responses = state.routes.get(("WATCH" if watching else self.command, path))
            if not responses and watching:
                time.sleep(0.5)
                code, payload = 200, []
            elif not responses:
                code, payload = status(404, "NotFound", f"{path} not found")
            else:
                code, payload = responses.pop(0) if len(responses) > 1 else responses[0]
            if isinstance(payload, list):      # a watch stream: one JSON event per line
                data = b"".join(json.dumps(e).encode() + b"\n" for e in payload)
            else:
                data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            import sys
            if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                super().handle_error(request, client_address)   # a client gone is no error

    server = Server((host, 0), Handler)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    state.url = f"http://{host}:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def route_claim_to_provision(api: Api, claim: dict) -> None:
    """Answers for provisioning ``claim`` (ci/gradle-cache of k8s_objects): its StorageClass,
    node and namespace, and accepts the finalizer patch, the setup Pod and the events."""
    from k8s_objects import namespace, node, storage_class

    api.on("GET", "/api/v1/namespaces/ci/persistentvolumeclaims/gradle-cache", (200, claim))
    api.on("GET", "/apis/storage.k8s.io/v1/storageclasses/cachesync", (200, storage_class()))
    api.on("GET", "/api/v1/nodes/worker-a", (200, node()))
    api.on("GET", "/api/v1/namespaces/ci", (200, namespace()))
    api.on("PATCH", "/api/v1/namespaces/ci/persistentvolumeclaims/gradle-cache", (200, claim))
    api.on("POST", "/api/v1/namespaces/cachesync/pods", (201, {}))
    api.on("POST", "/api/v1/namespaces/ci/events", (201, {}))
