"""PagerDuty incidents (REST API v2, ``GET /incidents``).

One partition = the incidents created in that UTC day: ``since``/``until`` are the day's
bounds, every status, paged with ``offset``/``limit``/``more``. ``opened_at`` is
``created_at``; ``resolved_at`` is the incident's ``resolved_at`` (falling back to
``last_status_change_at`` for a resolved incident from an API version without it). The
affected service is ``("pagerduty_service", service.id)``, resolved to a component by
the catalog annotation ``pagerduty.com/service-id``.

PagerDuty does not say whether a change caused an incident, so ``caused_by_change`` is
NULL unless ``PAGERDUTY_CHANGE_FIELD`` names a field of the incident whose value says
so (see ``change_flag``). See docs/sources/pagerduty.md.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from ..config import Settings
from ..records import Incident, Quarantined, utc_day_bounds
from .base import ExtractContext, SourceError
from .http import HttpClient, PagedApiSource

SOURCE_NAME = "pagerduty"
STATUSES = ("triggered", "acknowledged", "resolved")
# PagerDuty's classic pagination stops at offset + limit = 10000.
MAX_OFFSET = 10_000

_NOT_CHANGE = re.compile(r"\b(not|no|non)\s*(caused\s*by\s*)?(a\s*)?changes?\b")
_CHANGE = re.compile(r"\bchanges?\b")


def change_flag(value: object) -> bool | None:
    """Whether a field's value says the incident was caused by a change.

    ``true``/``false`` (JSON booleans or the words true/yes, false/no) mean what they say;
    text mentioning "not/no/non (caused by a) change" in any spelling (``not-change``,
    ``No change``, ``non_change``) is False; other text mentioning "change"
    (``change``, ``change-induced``, ``Config change``) is True; anything else, or no
    value, is unknown (None), which the metrics count against changes.
    """
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None
    words = re.sub(r"[^a-z0-9]+", " ", value.lower()).strip()
    if words in ("false", "no") or _NOT_CHANGE.search(words):
        return False
    if words in ("true", "yes") or _CHANGE.search(words):
        return True
    return None


def lookup(item: dict, path: str) -> object:
    """The value at a dotted path (``incident_type.name``, ``priority.summary``,
    ``teams.0.summary``); None when any step is missing."""
    value: object = item
    for step in path.split("."):
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def _time(item: dict, name: str) -> datetime | None:
    value = item.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name}: is not a timestamp: {value!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}: is not a timestamp: {value[:80]!r}") from None


def incident_from_payload(item: object, change_field: str = "") -> Incident | Quarantined:
    """One PagerDuty incident object as an ``Incident`` (or why it cannot be one)."""
    if not isinstance(item, dict) or not item.get("id"):
        return Quarantined(SOURCE_NAME, "incidents", None, "incident: not an object with an id", item)
    try:
        opened = _time(item, "created_at")
        resolved = None
        if item.get("status") == "resolved":
            resolved = _time(item, "resolved_at") or _time(item, "last_status_change_at")
    except ValueError as exc:
        return Quarantined(SOURCE_NAME, "incidents", f"{SOURCE_NAME}:{item['id']}", str(exc), item)
    service = item.get("service") or {}
    service_id = service.get("id") if isinstance(service, dict) else None
    return Incident(
        source=SOURCE_NAME,
        external_id=str(item["id"]),
        opened_at=opened,
        resolved_at=resolved,
        affected=(("pagerduty_service", str(service_id)),) if service_id else (),
        caused_by_change=change_flag(lookup(item, change_field)) if change_field else None,
        title=item.get("title") or item.get("summary"),
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PagerDutySource(PagedApiSource):
    """PagerDuty incidents created in the partition's UTC day."""

    name = SOURCE_NAME
    writes = ("incidents", "incident_components")
    revisit_open_incidents = True
    description = "PagerDuty incidents (REST API v2) created in the day, with their service"

    def skip_reason(self, settings: Settings) -> str | None:
        return None if settings.pagerduty_token else "PAGERDUTY_TOKEN is not set"

    def client(self, settings: Settings) -> HttpClient:
        return self.retry.client(
            settings, settings.pagerduty_api_url, name=SOURCE_NAME,
            headers={
                "Authorization": f"Token token={settings.pagerduty_token.get()}",
                "Accept": "application/vnd.pagerduty+json;version=2",
            },
        )

    def extract(self, day: date, ctx: ExtractContext) -> list[Incident | Quarantined]:
        start, end = utc_day_bounds(day)
        http = self.client(ctx.settings)
        items: list[object] = []
        offset = 0
        while True:
            params: list[tuple[str, object]] = [
                ("since", _iso(start)), ("until", _iso(end)), ("time_zone", "UTC"),
                *[("statuses[]", status) for status in STATUSES],
                ("sort_by", "created_at:asc"), ("limit", self.page_size), ("offset", offset),
            ]
            page = http.get_json("incidents", params=params)
            incidents = page.get("incidents") if isinstance(page, dict) else None
            if not isinstance(incidents, list):
                raise SourceError(f"pagerduty: GET /incidents at offset {offset} returned no incidents list")
            items.extend(incidents)
            if not page.get("more"):
                break
            if not incidents:
                # "more" with an empty page: going on would ask for this offset forever,
                # stopping would land part of the day as if it were all of it.
                raise SourceError(
                    f"pagerduty: GET /incidents at offset {offset} returned an empty page that "
                    "says more follow; the day is left for the next run rather than landed incomplete"
                )
            offset += len(incidents)
            if offset >= MAX_OFFSET:
                raise SourceError(
                    f"pagerduty: more than {MAX_OFFSET} incidents on {day}; PagerDuty's offset "
                    "pagination cannot go further"
                )
        records = [incident_from_payload(item, ctx.settings.pagerduty_change_field) for item in items]
        # An incident created exactly at ``until`` may come back too: each lands in one day only.
        return [
            r for r in records
            if isinstance(r, Quarantined) or r.opened_at is None or r.opened_at.tzinfo is None
            or start <= r.opened_at < end
        ]


SOURCE = PagerDutySource()

