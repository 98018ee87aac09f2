"""Opsgenie incidents (Incident API, ``GET /v1/incidents``).

One partition = the incidents created in that UTC day, found with the search query
``createdAt>=<day start> AND createdAt<<next day start>`` (epoch milliseconds), paged
with ``offset``/``limit`` in ``createdAt`` order. Opsgenie incidents carry no resolved-at
field, so for a resolved or closed incident the resolution time is read from its log
(``GET /v1/incidents/{id}/logs``): the first resolve/close entry after the last reopen.
When the log has no such entry, the incident's ``impactEndDate`` is used instead.

Affected components: each id in ``impactedServices`` as ``("opsgenie_service", id)``;
without impacted services, tags that name a component (``component:<ref or name>``,
``service:<name>``, or a full entity ref). A tag such as ``not-change`` marks the
incident as not caused by a change. See docs/sources/opsgenie.md.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from ..config import Settings
from ..records import ENTITY_REF_RE, Incident, Quarantined, normalise_ref, utc_day_bounds
from .base import ExtractContext, SourceError
from .http import HttpClient, PagedApiSource
from .pagerduty import change_flag

SOURCE_NAME = "opsgenie"
RESOLVED_STATUSES = frozenset({"resolved", "closed"})
MAX_LOG_PAGES = 50

_RESOLVE_TEXT = re.compile(
    r"\bincident\b.*\b(resolved|closed)\b"
    r"|\b(resolved|closed)\s+(the\s+)?incident\b"
    r"|\bstatus\s+(changed\s+)?(from\s+\w+\s+)?to\s+(resolved|closed)\b",
    re.IGNORECASE,
)
_REOPEN_TEXT = re.compile(r"\breopen", re.IGNORECASE)


def _parse_time(value: object) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    return datetime.fromisoformat(value)


def resolution_time(logs: list[dict]) -> datetime | None:
    """When the incident was resolved according to its log: the first resolve or close
    entry after the last reopen (a later close of a resolved incident does not move it)."""
    entries = []
    for entry in logs:
        if not isinstance(entry, dict):
            continue
        try:
            at = _parse_time(entry.get("createdAt"))
        except ValueError:
            continue
        if at is not None:
            entries.append((at, entry))
    resolved: datetime | None = None
    for at, entry in sorted(entries, key=lambda pair: pair[0]):
        text = str(entry.get("log") or "")
        kind = str(entry.get("type") or "").lower()
        if "reopen" in kind or _REOPEN_TEXT.search(text):
            resolved = None
        elif resolved is None and (kind in ("resolve", "close") or _RESOLVE_TEXT.search(text)):
            resolved = at
    return resolved


def affected_services(item: dict) -> tuple[tuple[str, str], ...]:
    """Impacted services by id; without any, the tags that name a component."""
    services = item.get("impactedServices") or []
    if isinstance(services, list) and services:
        return tuple(sorted({("opsgenie_service", str(s)) for s in services if s}))
    found: set[tuple[str, str]] = set()
    for tag in item.get("tags") or []:
        if not isinstance(tag, str):
            continue
        tag = tag.strip()
        if ENTITY_REF_RE.match(tag.lower()):
            found.add(("entity_ref", tag.lower()))
            continue
        prefix, _, rest = tag.partition(":")
        if prefix.lower() == "component" and rest:
            ref = normalise_ref(rest, "component")
            found.add(("entity_ref", ref) if ENTITY_REF_RE.match(ref) else ("name", rest.lower()))
        elif prefix.lower() == "service" and rest:
            found.add(("name", rest.strip().lower()))
    return tuple(sorted(found))


def caused_by_change(item: dict) -> bool | None:
    """False when a tag says "not (caused by a) change"; otherwise unknown."""
    for tag in item.get("tags") or []:
        if change_flag(tag) is False:
            return False
    return None


def incident_from_payload(item: object, logs: list[dict] | None = None) -> Incident | Quarantined:
    """One Opsgenie incident (and, when resolved, its log) as an ``Incident``."""
    if not isinstance(item, dict) or not item.get("id"):
        return Quarantined(SOURCE_NAME, "incidents", None, "incident: not an object with an id", item)
    key = f"{SOURCE_NAME}:{item['id']}"
    try:
        opened = _parse_time(item.get("createdAt"))
        resolved = None
        if item.get("status") in RESOLVED_STATUSES:
            resolved = resolution_time(logs or []) or _parse_time(item.get("impactEndDate"))
    except ValueError as exc:
        return Quarantined(SOURCE_NAME, "incidents", key, f"createdAt/impactEndDate: {exc}", item)
    tiny = item.get("tinyId")
    message = item.get("message")
    return Incident(
        source=SOURCE_NAME,
        external_id=str(item["id"]),
        opened_at=opened,
        resolved_at=resolved,
        affected=affected_services(item),
        caused_by_change=caused_by_change(item),
        title=f"#{tiny} {message}" if tiny and message else message,
    )


class OpsgenieSource(PagedApiSource):
    """Opsgenie incidents created in the partition's UTC day."""

    name = SOURCE_NAME
    writes = ("incidents", "incident_components")
    revisit_open_incidents = True
    description = "Opsgenie incidents created in the day, resolution time from the incident log"

    def __init__(self, *, log_page_size: int = 100, **paging: Any) -> None:
        super().__init__(**paging)
        self.log_page_size = log_page_size

    def skip_reason(self, settings: Settings) -> str | None:
        return None if settings.opsgenie_api_key else "OPSGENIE_API_KEY is not set"

    def client(self, settings: Settings) -> HttpClient:
        return self.retry.client(
            settings, settings.opsgenie_api_url, name=SOURCE_NAME,
            headers={"Authorization": f"GenieKey {settings.opsgenie_api_key.get()}"},
        )

    def extract(self, day: date, ctx: ExtractContext) -> list[Incident | Quarantined]:
        start, end = utc_day_bounds(day)
        http = self.client(ctx.settings)
        query = f"createdAt>={_millis(start)} AND createdAt<{_millis(end)}"
        items: list[object] = []
        offset = 0
        while True:
            page = http.get_json("v1/incidents", params={
                "query": query, "offset": offset, "limit": self.page_size,
                "sort": "createdAt", "order": "asc",
            })
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                raise SourceError(f"opsgenie: GET /v1/incidents at offset {offset} returned no data list")
            items.extend(data)
            if len(data) < self.page_size:
                if (page.get("paging") or {}).get("next"):
                    # A short (or empty) page that still links a next one: stopping here
                    # would land part of the day as if it were all of it.
                    raise SourceError(
                        f"opsgenie: GET /v1/incidents at offset {offset} returned {len(data)} of "
                        f"{self.page_size} incidents yet links a next page; the day is left for "
                        "the next run rather than landed incomplete"
                    )
                break
            offset += len(data)
        records: list[Incident | Quarantined] = []
        for item in items:
            logs = None
            if isinstance(item, dict) and item.get("id") and item.get("status") in RESOLVED_STATUSES:
                logs = self._logs(http, str(item["id"]))
            records.append(incident_from_payload(item, logs))
        return records

    def _logs(self, http: HttpClient, incident_id: str) -> list[dict]:
        """Every log entry of one incident, oldest first (paged by the entries' offsets)."""
        path = f"v1/incidents/{quote(incident_id, safe='')}/logs"
        entries: list[dict] = []
        offset: str | None = None
        for _ in range(MAX_LOG_PAGES):
            params = {"identifierType": "id", "order": "asc", "direction": "next",
                      "limit": self.log_page_size}
            if offset:
                params["offset"] = offset
            page = http.get_json(path, params=params)
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                raise SourceError(f"opsgenie: GET /v1/incidents/{{id}}/logs returned no data list for {incident_id}")
            entries.extend(d for d in data if isinstance(d, dict))
            next_offset = data[-1].get("offset") if data and isinstance(data[-1], dict) else None
            if len(data) < self.log_page_size or not next_offset or next_offset == offset:
                return entries
            offset = str(next_offset)
        raise SourceError(f"opsgenie: the log of incident {incident_id} has more than {MAX_LOG_PAGES} pages")


def _millis(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)


SOURCE = OpsgenieSource()
