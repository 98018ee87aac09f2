"""A tiny fake Kubernetes API server that serves ArgoCD Applications over HTTP.

It answers the two list endpoints the ArgoCD source uses, the way the API server does:

- ``GET /apis/argoproj.io/v1alpha1/applications`` (all namespaces)
- ``GET /apis/argoproj.io/v1alpha1/namespaces/<ns>/applications``

with ``limit``/``continue`` paging over a consistent snapshot taken at the first page,
bearer-token authentication, and ``410 Gone`` with a ``Status`` body (reason
``Expired``) for a continue token that has expired. Tests point the real
``kubernetes`` client at it through a kubeconfig file.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

PREFIX = "/apis/argoproj.io/v1alpha1"
TOKEN = "fake-k8s-token"


def make_application(
    name: str,
    uid: str,
    *,
    namespace: str = "argocd",
    destination_namespace: str = "production",
    project: str = "default",
    labels: dict | None = None,
    history: list[dict] | None = None,
    operation_state: dict | None = None,
) -> dict:
    """An Application shaped like ArgoCD's (see ../shared/reference/argocd-application-example.yaml)."""
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": labels or {}},
        "spec": {
            "destination": {"server": "https://kubernetes.default.svc", "namespace": destination_namespace},
            "project": project,
            "source": {"repoURL": f"https://github.com/acme/{name}.git", "path": "deploy",
                       "targetRevision": "HEAD"},
        },
        "status": {"history": history or [], "health": {"status": "Healthy"}},
    }
    if operation_state:
        app["status"]["operationState"] = operation_state
    return app


def history_entry(entry_id: int, revision: str, started: str, deployed: str) -> dict:
    return {
        "id": entry_id,
        "revision": revision,
        "deployStartedAt": started,
        "deployedAt": deployed,
        "source": {"repoURL": "https://github.com/acme/manifests.git", "path": "deploy",
                   "targetRevision": "HEAD"},
    }


class FakeKubernetes:
    """The fake API server. ``applications`` can be changed between requests."""

    def __init__(self) -> None:
        self.applications: list[dict] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.expire_next_continue = 0  # answer this many upcoming continue requests with 410
        self.fail_next: list[int] = []  # statuses to answer the next requests with
        self._snapshots: dict[str, list[dict]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeKubernetes:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "dora", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "dora"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))  # JSON is valid YAML
        return path

    def list_paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    # ------------------------------------------------------------------ serving

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append((parts.path, query))
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(request, 401, _status(401, "Unauthorized", "Unauthorized"))
            if self.fail_next:
                code = self.fail_next.pop(0)
                return self._send(request, code, _status(code, "InternalError", "injected failure"))
            namespace = self._namespace_of(parts.path)
            if namespace is False:
                return self._send(request, 404, _status(404, "NotFound", "the server could not find the requested resource"))
            token = query.get("continue")
            if token and self.expire_next_continue:
                self.expire_next_continue -= 1
                self._snapshots.clear()
                return self._send(request, 410, _status(
                    410, "Expired",
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter, or use the "
                    "continue token in this response to retrieve the remainder of the results.",
                ))
            if token:
                snapshot_id, start = _decode(token)
                if snapshot_id not in self._snapshots:
                    return self._send(request, 410, _status(410, "Expired", "continue token too old"))
            else:
                snapshot_id, start = str(next(self._ids)), 0
                self._snapshots[snapshot_id] = [
                    copy.deepcopy(app) for app in sorted(
                        self.applications,
                        key=lambda a: (a["metadata"]["namespace"], a["metadata"]["name"]),
                    )
                    if namespace is None or app["metadata"]["namespace"] == namespace
                ]
            items = self._snapshots[snapshot_id]
            limit = int(query.get("limit") or 0) or len(items) or 1
            page = items[start:start + limit]
            metadata = {"resourceVersion": "1000"}
            if start + limit < len(items):
                metadata["continue"] = _encode(snapshot_id, start + limit)
                metadata["remainingItemCount"] = len(items) - start - limit
            body = {"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationList",
                    "metadata": metadata, "items": page}
            self._send(request, 200, body)

    @staticmethod
    def _namespace_of(path: str) -> str | None | bool:
        if path == f"{PREFIX}/applications":
            return None
        parts = path[len(PREFIX):].strip("/").split("/") if path.startswith(PREFIX) else []
        if len(parts) == 3 and parts[0] == "namespaces" and parts[2] == "applications":
            return parts[1]
        return False

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        request.send_response(code)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def _encode(snapshot_id: str, start: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([snapshot_id, start]).encode()).decode()


def _decode(token: str) -> tuple[str, int]:
    snapshot_id, start = json.loads(base64.urlsafe_b64decode(token.encode()))
    return snapshot_id, int(start)
