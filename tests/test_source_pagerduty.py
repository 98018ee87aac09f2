"""PagerDuty source against a fake REST API v2 server, loaded into the real test database."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from dora_pipeline.pipeline import extract_partition, open_incident_days
from dora_pipeline.sources import SourceError, get_source
from dora_pipeline.sources.pagerduty import (
    PagerDutySource,
    change_flag,
    incident_from_payload,
)
from dora_pipeline.warehouse import Warehouse

from conftest import REFERENCE, settings_with
from fakes.pagerduty_api import TOKEN, FakePagerDuty, make_incident

DAY = date(2025, 3, 3)
OPENAPI = REFERENCE / "pagerduty-openapiv3.json"


@pytest.fixture
def pagerduty(httpserver):
    return FakePagerDuty().install(httpserver)


def _warehouse(settings, httpserver, **env) -> Warehouse:
    return Warehouse(settings_with(
        settings, PAGERDUTY_TOKEN=TOKEN, PAGERDUTY_API_URL=httpserver.url_for("/").rstrip("/"),
        DORA_HTTP_MAX_RETRIES="3", **env,
    ))


def _source(waits: list | None = None) -> PagerDutySource:
    waits = [] if waits is None else waits
    return PagerDutySource(page_size=2, backoff_base=0.001, timeout=0.5, sleep=waits.append)


def _incidents(conn):
    return conn.execute(
        """
        select i.external_id, i.title, i.opened_at, i.resolved_at, i.caused_by_change, i.partition_date,
               array_agg(c.service_key_type || '=' || c.service_key order by c.service_key)
        from dora_raw.incidents i
        join dora_raw.incident_components c using (source, external_id)
        group by 1, 2, 3, 4, 5, 6 order by 1
        """
    ).fetchall()


def _day_of_incidents() -> list[dict]:
    return [
        make_incident("PPREV01", "2025-03-02T23:59:59Z", "PSVC1", number=1),
        make_incident("PA00001", "2025-03-03T00:00:00Z", "PSVC1", number=2, status="resolved",
                      resolved_at="2025-03-03T00:45:00Z"),
        make_incident("PA00002", "2025-03-03T08:00:00Z", "PSVC2", number=3, status="acknowledged"),
        make_incident("PA00003", "2025-03-03T09:00:00Z", "PSVC1", number=4),
        make_incident("PA00004", "2025-03-03T12:00:00Z", "PSVC3", number=5, status="resolved",
                      resolved_at="2025-03-04T01:00:00Z"),
        make_incident("PA00005", "2025-03-03T23:59:59Z", "PSVC2", number=6),
        make_incident("PNEXT01", "2025-03-04T00:00:00Z", "PSVC1", number=7),
    ]


def test_registered_and_skipped_without_a_token(warehouse):
    source = get_source("pagerduty")
    assert source.skip_reason(warehouse.settings) == "PAGERDUTY_TOKEN is not set"
    assert extract_partition(warehouse, source, DAY) is None


def test_pages_the_day_with_offset_limit_more(settings, httpserver, pagerduty, conn):
    pagerduty.incidents = _day_of_incidents()
    result = extract_partition(_warehouse(settings, httpserver), _source(), DAY)

    assert (result.rows["incidents"], result.quarantined) == (5, 0)
    # The fake's until is inclusive (PNEXT01 comes back on the last page); it lands on its own day only.
    assert pagerduty.offsets() == [0, 2, 4]
    first = pagerduty.requests[0]
    assert first["since"] == "2025-03-03T00:00:00Z" and first["until"] == "2025-03-04T00:00:00Z"
    assert first["statuses[]"] == ["triggered", "acknowledged", "resolved"]
    assert first["time_zone"] == "UTC" and "date_range" not in first
    rows = _incidents(conn)
    assert [r[0] for r in rows] == ["PA00001", "PA00002", "PA00003", "PA00004", "PA00005"]
    assert rows[0] == (
        "PA00001", "The server is on fire.", datetime(2025, 3, 3, tzinfo=UTC),
        datetime(2025, 3, 3, 0, 45, tzinfo=UTC), None, DAY, ["pagerduty_service=PSVC1"],
    )
    assert rows[1][3] is None  # acknowledged: not resolved


@pytest.mark.skipif(not OPENAPI.exists(), reason="PagerDuty OpenAPI reference not available")
def test_the_documented_example_incident_maps_to_an_incident():
    spec = json.loads(OPENAPI.read_text())
    example = spec["paths"]["/incidents"]["get"]["responses"]["200"]["content"]["application/json"][
        "examples"]["response"]["value"]
    incident = incident_from_payload(example["incidents"][0])
    assert incident.external_id == "PT4KHLK"
    assert incident.opened_at == datetime(2015, 10, 6, 21, 30, 42, tzinfo=UTC)
    assert incident.resolved_at == datetime(2015, 10, 6, 21, 38, 23, tzinfo=UTC)
    assert incident.affected == (("pagerduty_service", "PIJ90N7"),)
    assert incident.caused_by_change is None
    assert example["more"] is True and "offset" in example and "limit" in example


def test_resolved_time_falls_back_to_the_last_status_change():
    item = make_incident("P1", "2025-03-03T10:00:00Z", "S1", status="resolved",
                         last_status_change_at="2025-03-03T10:30:00Z")
    del item["resolved_at"]
    assert incident_from_payload(item).resolved_at == datetime(2025, 3, 3, 10, 30, tzinfo=UTC)


def test_rate_limits_server_errors_and_timeouts_are_retried(settings, httpserver, pagerduty, conn):
    pagerduty.incidents = _day_of_incidents()
    pagerduty.fail_next = [(429, {"Retry-After": "7"}), (503, {})]
    pagerduty.delay_next = [0.8]  # longer than the 0.5 s client timeout
    waits: list[float] = []
    result = extract_partition(_warehouse(settings, httpserver), _source(waits), DAY)

    assert result.rows["incidents"] == 5
    assert 7.0 in waits  # Retry-After honoured (the test's sleep records instead of sleeping)
    assert len(waits) == 3


def test_retries_run_out_and_the_partition_fails_whole(settings, httpserver, pagerduty, conn):
    pagerduty.incidents = _day_of_incidents()
    pagerduty.fail_next = [(500, {})] * 10
    with pytest.raises(SourceError, match="failed after 4 attempts: HTTP 500") as failure:
        extract_partition(_warehouse(settings, httpserver), _source(), DAY)
    assert TOKEN not in str(failure.value)
    assert _incidents(conn) == []


def test_a_malformed_page_loads_nothing(settings, httpserver, pagerduty, conn):
    pagerduty.incidents = _day_of_incidents()
    wh = _warehouse(settings, httpserver)
    extract_partition(wh, _source(), DAY)
    before = _incidents(conn)

    pagerduty.incidents[2]["status"] = "resolved"
    pagerduty.incidents[2]["resolved_at"] = "2025-03-03T09:00:00Z"
    pagerduty.malformed_offsets = {2}  # page 2 is cut off mid-JSON on every attempt
    with pytest.raises(SourceError, match="invalid JSON"):
        extract_partition(wh, _source(), DAY)
    assert _incidents(conn) == before


def test_an_incident_resolved_later_is_updated_in_place(settings, httpserver, pagerduty, conn):
    incident = make_incident("PA00009", "2025-03-03T10:00:00Z", "PSVC1", status="triggered")
    pagerduty.incidents = [incident]
    wh = _warehouse(settings, httpserver)
    extract_partition(wh, _source(), DAY)
    assert open_incident_days(wh, "pagerduty", lookback_days=100_000) == [DAY]

    incident.update(status="resolved", resolved_at="2025-03-05T10:00:00Z")
    extract_partition(wh, _source(), DAY)

    rows = _incidents(conn)
    assert len(rows) == 1
    assert rows[0][3] == datetime(2025, 3, 5, 10, tzinfo=UTC)
    assert open_incident_days(wh, "pagerduty", lookback_days=100_000) == []


def test_a_run_of_later_days_revisits_days_with_open_incidents(settings, httpserver, pagerduty, conn):
    from datetime import timedelta

    from dora_pipeline.pipeline import run

    incident = make_incident("PA00010", "2025-03-03T10:00:00Z", "PSVC1", status="triggered")
    pagerduty.incidents = [incident]
    wh = _warehouse(settings, httpserver)
    run(wh, DAY, DAY, sources=[_source()])
    incident.update(status="resolved", resolved_at="2025-03-09T10:00:00Z")
    later = DAY + timedelta(days=7)
    run(wh, later, later, sources=[_source()])
    assert _incidents(conn)[0][3] == datetime(2025, 3, 9, 10, tzinfo=UTC)


def test_a_configured_field_says_whether_a_change_caused_it(settings, httpserver, pagerduty, conn):
    pagerduty.incidents = [
        make_incident("PC1", "2025-03-03T10:00:00Z", "S1", incident_type={"name": "not_change"}),
        make_incident("PC2", "2025-03-03T11:00:00Z", "S1", incident_type={"name": "change_induced"}),
        make_incident("PC3", "2025-03-03T12:00:00Z", "S1"),
    ]
    wh = _warehouse(settings, httpserver, PAGERDUTY_CHANGE_FIELD="incident_type.name")
    extract_partition(wh, _source(), DAY)
    assert [(r[0], r[4]) for r in _incidents(conn)] == [("PC1", False), ("PC2", True), ("PC3", None)]


@pytest.mark.parametrize(
    ("value", "flag"),
    [
        (True, True), (False, False), (None, None), (3, None), ("", None),
        ("not-change", False), ("No change", False), ("non_change", False), ("nochange", False),
        ("[not caused by a change] DB failover", False), ("false", False),
        ("change", True), ("change-induced", True), ("Config change broke login", True), ("yes", True),
        ("incident_default", None), ("unchanged", None), ("P2", None),
    ],
)
def test_change_flag(value, flag):
    assert change_flag(value) is flag
