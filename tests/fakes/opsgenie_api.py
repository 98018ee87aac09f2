"""A fake Opsgenie Incident API for pytest-httpserver.

``GET /v1/incidents`` with the search ``query`` ``createdAt>=<ms> AND createdAt<<ms>``,
``offset``/``limit`` paging in ``sort=createdAt``/``order`` order, and
``GET /v1/incidents/<id>/logs`` paged by the entries' ``offset`` tokens, both behind
``Authorization: GenieKey <key>``, answering ``{"data": [...], "paging": {...},
"took": ..., "requestId": ...}`` like Opsgenie. Faults: ``fail_next`` (status,
headers) answers, ``delay_next`` seconds of silence, ``malformed_offsets`` pages of the
incident list cut off mid-JSON.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime

from werkzeug import Request, Response

API_KEY = "og-test-key-0123456789"
QUERY_RE = re.compile(r"^createdAt>=(\d+) AND createdAt<(\d+)$")


def make_incident(
    incident_id: str,
    tiny_id: str,
    created_at: str,
    *,
    status: str = "open",
    impacted_services: list[str] | None = None,
    tags: list[str] | None = None,
    message: str = "Checkout errors",
    impact_end: str | None = None,
) -> dict:
    """An incident shaped like Opsgenie's (list and get answers)."""
    incident = {
        "id": incident_id,
        "tinyId": tiny_id,
        "message": message,
        "description": "",
        "status": status,
        "tags": tags or [],
        "createdAt": created_at,
        "updatedAt": impact_end or created_at,
        "priority": "P2",
        "ownerTeam": "",
        "responders": [{"type": "team", "id": "63374eee-0b03-42d4-bb8c-50d1fa64827c"}],
        "extraProperties": {},
        "impactedServices": impacted_services or [],
        "links": {"web": f"https://acme.app.opsgenie.com/incident/detail/{incident_id}",
                  "api": f"https://api.opsgenie.com/v1/incidents/{incident_id}"},
        "impactStartDate": created_at,
        "actions": [],
    }
    if impact_end:
        incident["impactEndDate"] = impact_end
    return incident


def log_entry(created_at: str, text: str, kind: str = "system") -> dict:
    millis = int(datetime.fromisoformat(created_at).timestamp() * 1000)
    return {"owner": "System", "createdAt": created_at, "log": text, "type": kind,
            "offset": f"{millis}_{millis}000045"}


def _millis(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp() * 1000)


class FakeOpsgenie:
    def __init__(self) -> None:
        self.incidents: list[dict] = []
        self.logs: dict[str, list[dict]] = {}
        self.requests: list[tuple[str, dict]] = []
        self.fail_next: list[tuple[int, dict]] = []
        self.delay_next: list[float] = []
        self.malformed_offsets: set[int] = set()

    def install(self, httpserver) -> FakeOpsgenie:
        httpserver.expect_request(re.compile(r"^/v1/incidents(/[^/]+/logs)?$"), method="GET") \
            .respond_with_handler(self.handle)
        return self

    def list_requests(self) -> list[dict]:
        return [q for path, q in self.requests if path == "/v1/incidents"]

    def handle(self, request: Request) -> Response:
        self.requests.append((request.path, dict(request.args)))
        if self.delay_next:  # the client gives up before this answer comes
            time.sleep(self.delay_next.pop(0))
            return _json({}, 504)
        if self.fail_next:
            status, headers = self.fail_next.pop(0)
            return _json({"message": "injected", "took": 0.0, "requestId": str(uuid.uuid4())}, status, headers)
        if request.headers.get("Authorization") != f"GenieKey {API_KEY}":
            return _json({"message": "Could not authenticate", "took": 0.0}, 401)
        if request.path == "/v1/incidents":
            return self._list(request)
        return self._logs(request, request.path.split("/")[3])

    def _list(self, request: Request) -> Response:
        match = QUERY_RE.match(request.args.get("query", ""))
        if not match:
            return _json({"message": "Invalid query", "took": 0.0}, 422)
        low, high = int(match[1]), int(match[2])
        if request.args.get("sort", "createdAt") != "createdAt":
            return _json({"message": "unsupported sort", "took": 0.0}, 422)
        matching = sorted((i for i in self.incidents if low <= _millis(i["createdAt"]) < high),
                          key=lambda i: i["createdAt"], reverse=request.args.get("order") != "asc")
        offset, limit = int(request.args.get("offset", 0)), int(request.args.get("limit", 20))
        if offset in self.malformed_offsets:
            return Response('{"data": [{"id": "4a0c', status=200, content_type="application/json")
        body = {"data": matching[offset:offset + limit], "took": 0.1, "requestId": str(uuid.uuid4()),
                "totalCount": len(matching), "paging": {}}
        if offset + limit < len(matching):
            body["paging"]["next"] = f"{request.host_url}v1/incidents?offset={offset + limit}&limit={limit}"
        return _json(body)

    def _logs(self, request: Request, incident_id: str) -> Response:
        if request.args.get("identifierType", "id") != "id":
            return _json({"message": "identifierType must be id", "took": 0.0}, 422)
        if incident_id not in self.logs and incident_id not in {i["id"] for i in self.incidents}:
            return _json({"message": "Incident not found", "took": 0.0}, 404)
        entries = sorted(self.logs.get(incident_id, []), key=lambda e: e["offset"],
                         reverse=request.args.get("order") == "desc")
        after = request.args.get("offset")
        if after:
            entries = [e for e in entries if e["offset"] > after]
        limit = int(request.args.get("limit", 20))
        return _json({"data": entries[:limit], "took": 0.1, "requestId": str(uuid.uuid4()),
                      "paging": {}})


def _json(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")
