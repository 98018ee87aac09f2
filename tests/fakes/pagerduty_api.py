"""A fake PagerDuty REST API v2 ``GET /incidents`` for pytest-httpserver.

It speaks the documented contract (../shared/reference/pagerduty-openapiv3.json):
``Authorization: Token token=...``, the versioned ``Accept`` header, ``since``/``until``
filtering on ``created_at``, ``statuses[]``, ``offset``/``limit`` paging answered with
``more``. Faults are queued: ``fail_next`` (status, headers) answers, ``delay_next``
seconds of silence (a timeout), ``malformed_offsets`` pages cut off mid-JSON.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

from werkzeug import Request, Response

TOKEN = "pd-test-token-0123456789"
ACCEPT = "application/vnd.pagerduty+json;version=2"


def make_incident(
    incident_id: str,
    created_at: str,
    service_id: str,
    *,
    status: str = "triggered",
    resolved_at: str | None = None,
    title: str = "The server is on fire.",
    number: int = 1234,
    **extra,
) -> dict:
    """An incident shaped like the OpenAPI document's example."""
    incident = {
        "id": incident_id,
        "type": "incident",
        "summary": f"[#{number}] {title}",
        "self": f"https://api.pagerduty.com/incidents/{incident_id}",
        "html_url": f"https://subdomain.pagerduty.com/incidents/{incident_id}",
        "incident_number": number,
        "title": title,
        "created_at": created_at,
        "updated_at": resolved_at or created_at,
        "status": status,
        "incident_key": f"key-{incident_id}",
        "service": {
            "id": service_id,
            "type": "service_reference",
            "summary": f"Service {service_id}",
            "self": f"https://api.pagerduty.com/services/{service_id}",
        },
        "assignments": [],
        "last_status_change_at": resolved_at or created_at,
        "resolved_at": resolved_at,
        "urgency": "high",
        "incident_type": {"name": "incident_default"},
        "priority": {"id": "P53ZZH5", "type": "priority_reference", "summary": "P2"},
    }
    incident.update(extra)
    return incident


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


class FakePagerDuty:
    def __init__(self) -> None:
        self.incidents: list[dict] = []
        self.requests: list[dict] = []
        self.fail_next: list[tuple[int, dict]] = []
        self.delay_next: list[float] = []
        self.malformed_offsets: set[int] = set()

    def install(self, httpserver) -> FakePagerDuty:
        httpserver.expect_request("/incidents", method="GET").respond_with_handler(self.handle)
        return self

    def offsets(self) -> list[int]:
        return [int(r["offset"]) for r in self.requests if "offset" in r]

    def handle(self, request: Request) -> Response:
        args = request.args
        self.requests.append({k: (args.getlist(k) if k.endswith("[]") else args[k]) for k in args})
        if self.delay_next:  # the client gives up before this answer comes
            time.sleep(self.delay_next.pop(0))
            return _json({}, 504)
        if self.fail_next:
            status, headers = self.fail_next.pop(0)
            return _json({"error": {"message": "injected", "code": 2001}}, status, headers)
        if request.headers.get("Authorization") != f"Token token={TOKEN}":
            return _json({"error": {"message": "Unauthorized", "code": 2006}}, 401)
        if request.headers.get("Accept") != ACCEPT:
            return _json({"error": {"message": "Unsupported Accept header", "code": 2001}}, 406)
        if "date_range" in args:
            return _json({"error": {"message": "date_range=all ignores since/until", "code": 2001}}, 400)
        since, until = _time(args["since"]), _time(args["until"])
        statuses = set(args.getlist("statuses[]")) or {"triggered", "acknowledged", "resolved"}
        matching = sorted(
            (i for i in self.incidents
             if since <= _time(i["created_at"]) <= until and i["status"] in statuses),
            key=lambda i: i["created_at"],
        )
        offset, limit = int(args.get("offset", 0)), int(args.get("limit", 25))
        if offset in self.malformed_offsets:
            return Response('{"incidents": [{"id": "PX', status=200, content_type="application/json")
        page = matching[offset:offset + limit]
        return _json({"incidents": page, "limit": limit, "offset": offset,
                      "more": offset + limit < len(matching), "total": None})


def _json(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")
