"""A small Backstage catalog for tests: ``GET /api/catalog/entities/by-query`` with
Backstage's cursor paging (the cursor carries the filter; ``limit`` and ``fields`` are
read from each request) and bearer-token checks."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable

from werkzeug import Request, Response

BY_QUERY = "/api/catalog/entities/by-query"


def component(
    name: str,
    owner: str | None = None,
    namespace: str | None = None,
    annotations: dict | None = None,
    **spec,
) -> dict:
    metadata = {"name": name, "annotations": annotations or {}}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": metadata,
        "spec": {
            "type": "service",
            "lifecycle": "production",
            **({"owner": owner} if owner else {}),
            **spec,
        },
    }


def group(
    name: str,
    parent: str | None = None,
    members: list[str] | None = None,
    namespace: str | None = None,
    relations: list | None = None,
) -> dict:
    metadata = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    spec = {"type": "team", "children": [], "members": members or []}
    if parent:
        spec["parent"] = parent
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Group",
        "metadata": metadata,
        "spec": spec,
        "relations": relations or [],
    }


def user(name: str, member_of: list[str] | None = None, relations: list | None = None) -> dict:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "User",
        "metadata": {"name": name},
        "spec": {"profile": {"email": f"{name}@example.com"}, "memberOf": member_of or []},
        "relations": relations or [],
    }


def relation(type_: str, target_ref: str) -> dict:
    kind, _, rest = target_ref.partition(":")
    namespace, _, name = rest.partition("/")
    return {
        "type": type_,
        "targetRef": target_ref,
        "target": {"kind": kind, "namespace": namespace, "name": name},
    }


class FakeBackstage:
    def __init__(self, token: str | None, entities: list[dict]) -> None:
        self.token = token
        self.entities = entities
        self.requests: list[dict[str, list[str]]] = []
        self.faults: list[Callable[[], Response]] = []
        self._lock = threading.Lock()

    def install(self, httpserver, prefix: str = "") -> None:
        httpserver.expect_request(prefix + BY_QUERY, method="GET").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        args = {key: request.args.getlist(key) for key in request.args}
        with self._lock:
            self.requests.append(args)
            fault = self.faults.pop(0) if self.faults else None
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _json(
                {"error": {"name": "AuthenticationError", "message": "Missing credentials"}}, 401
            )
        if fault:
            return fault()
        limit = int(args.get("limit", ["20"])[0])
        if "cursor" in args:
            if "filter" in args:
                return _json(
                    {
                        "error": {
                            "name": "InputError",
                            "message": "Cannot use both cursor and filter",
                        }
                    },
                    400,
                )
            state = json.loads(base64.b64decode(args["cursor"][0]))
            kinds, offset = state["kinds"], state["offset"]
        else:
            kinds = [
                f.split("=", 1)[1].lower()
                for f in args.get("filter", [])
                if f.lower().startswith("kind=")
            ]
            offset = 0
        matching = [e for e in self.entities if not kinds or e["kind"].lower() in kinds]
        items = matching[offset : offset + limit]
        page_info = {}
        if offset + limit < len(matching):
            page_info["nextCursor"] = base64.b64encode(
                json.dumps({"kinds": kinds, "offset": offset + limit}).encode()
            ).decode()
        if offset > 0:
            page_info["prevCursor"] = base64.b64encode(
                json.dumps({"kinds": kinds, "offset": max(0, offset - limit)}).encode()
            ).decode()
        return _json({"items": items, "totalItems": len(matching), "pageInfo": page_info})


def _json(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")
