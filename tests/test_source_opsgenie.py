"""Opsgenie source against a fake Incident API server, loaded into the real test database."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from dora_pipeline.pipeline import extract_partition
from dora_pipeline.sources import SourceError, get_source
from dora_pipeline.sources.opsgenie import OpsgenieSource, affected_services, resolution_time
from dora_pipeline.warehouse import Warehouse

from conftest import settings_with
from fakes.opsgenie_api import API_KEY, FakeOpsgenie, log_entry, make_incident

DAY = date(2025, 3, 3)
SVC_A = "59591948-d418-4bb9-af16-170d6b232b7d"
SVC_B = "daa0d66f-ad35-4396-b30d-70f0314c697a"


@pytest.fixture
def opsgenie(httpserver):
    return FakeOpsgenie().install(httpserver)


def _warehouse(settings, httpserver) -> Warehouse:
    return Warehouse(settings_with(
        settings, OPSGENIE_API_KEY=API_KEY, OPSGENIE_API_URL=httpserver.url_for("/").rstrip("/"),
        DORA_HTTP_MAX_RETRIES="3",
    ))


def _source(waits: list | None = None) -> OpsgenieSource:
    waits = [] if waits is None else waits
    return OpsgenieSource(page_size=2, log_page_size=2, backoff_base=0.001, timeout=0.5, sleep=waits.append)


def _incidents(conn):
    return conn.execute(
        """
        select i.external_id, i.title, i.opened_at, i.resolved_at, i.caused_by_change,
               array_agg(c.service_key_type || '=' || c.service_key order by c.service_key_type, c.service_key)
        from dora_raw.incidents i
        join dora_raw.incident_components c using (source, external_id)
        group by 1, 2, 3, 4, 5 order by 3
        """
    ).fetchall()


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _day_of_incidents(fake: FakeOpsgenie) -> None:
    fake.incidents = [
        make_incident("og-prev", "1", "2025-03-02T23:59:59.999Z", impacted_services=[SVC_A]),
        make_incident("og-1", "2", "2025-03-03T00:00:00Z", status="resolved", impacted_services=[SVC_A, SVC_B]),
        make_incident("og-2", "3", "2025-03-03T06:00:00.5Z", status="closed", impacted_services=[SVC_B]),
        make_incident("og-3", "4", "2025-03-03T09:00:00Z", impacted_services=[SVC_A]),
        make_incident("og-4", "5", "2025-03-03T12:00:00Z", status="resolved", impacted_services=[SVC_A],
                      impact_end="2025-03-03T12:30:00Z"),
        make_incident("og-5", "6", "2025-03-03T23:59:59.999Z", tags=["component:default/checkout", "p1"]),
        make_incident("og-next", "7", "2025-03-04T00:00:00Z", impacted_services=[SVC_A]),
    ]
    fake.logs = {
        "og-1": [
            log_entry("2025-03-03T00:00:00Z", "Incident created"),
            log_entry("2025-03-03T00:10:00Z", "Alert [disk full] closed by System"),
            log_entry("2025-03-03T00:20:00Z", "Incident resolved by jane@example.com"),
            log_entry("2025-03-03T00:25:00Z", "Incident reopened by bob@example.com"),
            log_entry("2025-03-03T01:00:00Z", "Incident resolved by bob@example.com"),
            log_entry("2025-03-03T02:00:00Z", "Incident closed by bob@example.com"),
        ],
        "og-2": [log_entry("2025-03-03T06:40:00Z", "Incident status changed from open to closed")],
        "og-4": [log_entry("2025-03-03T12:00:00Z", "Incident created")],
    }


def test_registered_and_skipped_without_a_key(warehouse):
    source = get_source("opsgenie")
    assert source.skip_reason(warehouse.settings) == "OPSGENIE_API_KEY is not set"
    assert extract_partition(warehouse, source, DAY) is None


def test_queries_the_day_by_created_time_with_offset_paging(settings, httpserver, opsgenie, conn):
    _day_of_incidents(opsgenie)
    result = extract_partition(_warehouse(settings, httpserver), _source(), DAY)

    assert (result.rows["incidents"], result.quarantined) == (5, 0)
    lists = opsgenie.list_requests()
    assert [q["offset"] for q in lists] == ["0", "2", "4"]
    assert lists[0]["query"] == "createdAt>=1740960000000 AND createdAt<1741046400000"
    assert (lists[0]["sort"], lists[0]["order"], lists[0]["limit"]) == ("createdAt", "asc", "2")
    rows = _incidents(conn)
    assert [r[0] for r in rows] == ["og-1", "og-2", "og-3", "og-4", "og-5"]
    assert rows[0][1] == "#2 Checkout errors"
    assert rows[0][5] == [f"opsgenie_service={SVC_A}", f"opsgenie_service={SVC_B}"]
    assert rows[4][5] == ["entity_ref=component:default/checkout"]


def test_resolution_time_comes_from_the_incident_log(settings, httpserver, opsgenie, conn):
    _day_of_incidents(opsgenie)
    extract_partition(_warehouse(settings, httpserver), _source(), DAY)
    resolved = {r[0]: r[3] for r in _incidents(conn)}

    # Resolved, reopened, resolved again, then closed: restored at the second resolve.
    assert resolved["og-1"] == _t("2025-03-03T01:00:00Z")
    assert resolved["og-2"] == _t("2025-03-03T06:40:00Z")
    # No resolve entry in the log: the documented fallback, impactEndDate.
    assert resolved["og-4"] == _t("2025-03-03T12:30:00Z")
    assert resolved["og-3"] is None and resolved["og-5"] is None
    # The log is paged by its entries' offsets; open incidents' logs are never read.
    log_requests = [q for path, q in opsgenie.requests if path == "/v1/incidents/og-1/logs"]
    assert len(log_requests) == 4  # 6 entries, 2 a page: the 4th page is empty
    assert "offset" not in log_requests[0] and log_requests[1]["offset"].startswith("1740960600000_")
    assert not any(path.startswith("/v1/incidents/og-3") for path, _ in opsgenie.requests)


def test_resolution_time_and_affected_services_rules():
    assert resolution_time([]) is None
    assert resolution_time([log_entry("2025-03-03T01:00:00Z", "Resolved the incident", kind="note")]) == _t(
        "2025-03-03T01:00:00Z")
    assert affected_services({"impactedServices": [], "tags": ["service:Payments", "Component:Checkout", "db"]}) == (
        ("entity_ref", "component:default/checkout"), ("name", "payments"))
    assert affected_services({"tags": ["p1"]}) == ()


def test_incident_without_a_service_is_quarantined_and_not_change_tag_is_kept(settings, httpserver, opsgenie, conn):
    opsgenie.incidents = [
        make_incident("og-x", "9", "2025-03-03T10:00:00Z", tags=["database"]),
        make_incident("og-y", "10", "2025-03-03T11:00:00Z", impacted_services=[SVC_A], tags=["not-change"]),
    ]
    result = extract_partition(_warehouse(settings, httpserver), _source(), DAY)

    assert (result.rows["incidents"], result.quarantined) == (1, 1)
    assert conn.execute("select record_key, reason from dora_raw.quarantine").fetchall() == [
        ("opsgenie:og-x", "affected: names no service")]
    assert [(r[0], r[4]) for r in _incidents(conn)] == [("og-y", False)]


def test_rate_limits_server_errors_and_timeouts_are_retried(settings, httpserver, opsgenie, conn):
    _day_of_incidents(opsgenie)
    opsgenie.fail_next = [(429, {"Retry-After": "5"}), (502, {})]
    opsgenie.delay_next = [0.8]
    waits: list[float] = []
    result = extract_partition(_warehouse(settings, httpserver), _source(waits), DAY)

    assert result.rows["incidents"] == 5
    assert 5.0 in waits and len(waits) == 3


def test_a_malformed_page_loads_nothing(settings, httpserver, opsgenie, conn):
    _day_of_incidents(opsgenie)
    opsgenie.malformed_offsets = {4}
    with pytest.raises(SourceError, match="invalid JSON"):
        extract_partition(_warehouse(settings, httpserver), _source(), DAY)
    assert _incidents(conn) == []
    assert conn.execute("select count(*) from dora_raw.extract_log").fetchone() == (0,)


def test_an_incident_resolved_later_is_updated_in_place(settings, httpserver, opsgenie, conn):
    incident = make_incident("og-7", "7", "2025-03-03T10:00:00Z", impacted_services=[SVC_A])
    opsgenie.incidents = [incident]
    wh = _warehouse(settings, httpserver)
    extract_partition(wh, _source(), DAY)
    assert _incidents(conn)[0][3] is None

    incident["status"] = "resolved"
    opsgenie.logs["og-7"] = [log_entry("2025-03-04T08:00:00Z", "Incident resolved by jane@example.com")]
    extract_partition(wh, _source(), DAY)

    rows = _incidents(conn)
    assert len(rows) == 1 and rows[0][3] == _t("2025-03-04T08:00:00Z")
