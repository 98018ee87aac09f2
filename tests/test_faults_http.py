"""The shared HTTP layer under injected faults, against a real local server.

``HttpClient`` is what every vendor source pages through, so its promises are tested
here once, on a vendor-shaped API (PagerDuty's offset/limit/more incident pages): 429
with and without Retry-After, 502/503, a reset connection, a read timeout, a truncated
body and a body cut mid-transfer are retried with capped backoff; a run that survives
lands exactly the rows of a clean run; one that does not fails the partition whole with
a message naming the request, never the token. Each real source gets the same faults in
``test_faults_sources.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import pytest
import requests

from dora_pipeline.config import Settings
from dora_pipeline.pipeline import extract_partition
from dora_pipeline.records import Incident, Quarantined
from dora_pipeline.sources import ExtractContext, Source, SourceError
from dora_pipeline.sources.http import HttpClient, RenewableAuth

import faults

# Fixtures shared by the fault tests (pytest only auto-loads conftest.py).
module_warehouse, fresh_warehouse = faults.module_warehouse, faults.fresh_warehouse

DAY = date(2025, 3, 3)
TOKEN = "SENTINEL-http-token-7c1e"
PAGE = 2
INCIDENTS = [
    {"id": f"PD{i:04d}", "type": "incident", "title": f"incident {i}", "status": "resolved",
     "created_at": f"2025-03-03T{i:02d}:00:00Z", "resolved_at": f"2025-03-03T{i:02d}:30:00Z",
     "service": {"id": f"PSVC{i % 3}", "type": "service_reference"}}
    for i in range(1, 8)
]


def pagerduty_shaped(request: faults.Request) -> faults.Reply:
    if request.headers.get("Authorization") != f"Token token={TOKEN}":
        return faults.json_reply({"error": {"message": "Unauthorized", "code": 2006}}, 401)
    offset = int(request.query.get("offset", ["0"])[0])
    limit = int(request.query.get("limit", ["25"])[0])
    page = INCIDENTS[offset:offset + limit]
    return faults.json_reply({"incidents": page, "offset": offset, "limit": limit,
                              "more": offset + limit < len(INCIDENTS), "total": None})


class OffsetPagedSource(Source):
    """A minimal vendor source on HttpClient: every page to the end, one record per item."""

    name = "http_fault_probe"
    writes = ("incidents", "incident_components")

    def __init__(self, base_url: str, waits: list[float], timeout: float = 0.3, retries: int = 4):
        self.base_url, self.waits, self.timeout, self.retries = base_url, waits, timeout, retries

    def skip_reason(self, settings: Settings) -> str | None:
        return None

    def client(self) -> HttpClient:
        return HttpClient(self.base_url, name=self.name, headers={"Authorization": f"Token token={TOKEN}"},
                          timeout=self.timeout, max_retries=self.retries, backoff_base=0.01,
                          backoff_cap=0.05, max_wait=5.0, sleep=self.waits.append)

    def extract(self, day: date, ctx: ExtractContext) -> Iterable[Incident | Quarantined]:
        client, offset = self.client(), 0
        while True:
            page = client.get_json("incidents", params={"offset": offset, "limit": PAGE})
            for item in page["incidents"]:
                yield Incident(self.name, item["id"], datetime.fromisoformat(item["created_at"]),
                               (("pagerduty_service", item["service"]["id"]),),
                               resolved_at=datetime.fromisoformat(item["resolved_at"]), title=item["title"])
            if not page["more"]:
                return
            offset += len(page["incidents"])


@pytest.fixture
def server():
    with faults.FaultyServer(pagerduty_shaped) as srv:
        yield srv


@pytest.fixture
def clean_rows(fresh_warehouse, server):
    """The rows a clean run lands (then the raw tables are emptied again)."""
    extract_partition(fresh_warehouse, OffsetPagedSource(server.url, []), DAY)
    with fresh_warehouse.connection() as conn:
        rows = faults.snapshot(conn)
        faults.truncate_raw(conn)
    assert len(rows["incidents"]) == len(INCIDENTS)
    server.log.clear()
    return rows


def _second_page(request: faults.Request) -> bool:
    return request.query.get("offset") == [str(PAGE)]


SURVIVABLE = {
    "429 with Retry-After": [faults.status(429, _second_page, Retry_After="2")],
    "429 without Retry-After": [faults.status(429, _second_page)],
    "429 with an HTTP-date Retry-After": [
        faults.status(429, _second_page, Retry_After="Wed, 21 Oct 2015 07:28:00 GMT")],
    "403 secondary rate limit": [faults.status(403, _second_page, x_ratelimit_remaining="0",
                                               x_ratelimit_reset="0")],
    "502": [faults.status(502, _second_page)],
    "503 three times": [faults.status(503, _second_page, times=3)],
    "connection reset": [faults.reset(_second_page)],
    "read timeout": [faults.hang(1.0, _second_page)],
    "truncated JSON": [faults.truncate(_second_page)],
    "body cut mid-transfer": [faults.cut(_second_page)],
    "everything at once": [faults.reset(), faults.status(429, Retry_After="1"), faults.status(502),
                           faults.hang(1.0), faults.truncate(), faults.cut(_second_page)],
}


@pytest.mark.parametrize("kind", SURVIVABLE)
def test_transient_faults_are_retried_and_the_partition_lands_exactly_once(
        kind, fresh_warehouse, server, clean_rows):
    waits: list[float] = []
    server.queue(*SURVIVABLE[kind])
    with faults.inject(f"http: {kind}"):
        result = extract_partition(fresh_warehouse, OffsetPagedSource(server.url, waits, retries=6), DAY)
        assert not server.pending(), f"not every fault was reached: {server.log}"
        with fresh_warehouse.connection() as conn:
            faults.assert_same_rows(clean_rows, faults.snapshot(conn), kind)
        assert result.rows["incidents"] == len(INCIDENTS)
        assert len(waits) >= len(SURVIVABLE[kind])  # every fault cost one wait, none was skipped
        assert max(waits) <= 5.0


def test_retry_after_is_honoured_and_backoff_is_exponential_and_capped(server):
    waits: list[float] = []
    server.queue(faults.status(429, Retry_After="3"), faults.status(503, times=5))
    client = HttpClient(server.url, name="probe", headers={"Authorization": f"Token token={TOKEN}"},
                        timeout=1, max_retries=6, backoff_base=0.1, backoff_cap=0.25, sleep=waits.append)
    with faults.inject("http: Retry-After then repeated 503"):
        assert client.get_json("incidents")["incidents"]
        assert waits[0] == 3.0
        backoff = waits[1:]
        # jittered in [half, full] of min(cap, base * 2**attempt)
        for attempt, wait in enumerate(backoff, start=1):
            full = min(0.25, 0.1 * 2**attempt)
            assert full / 2 <= wait <= full, (attempt, wait)
        assert max(backoff) <= 0.25


def test_retry_after_beyond_the_cap_fails_at_once_with_a_clear_message(server, fresh_warehouse, clean_rows):
    waits: list[float] = []
    server.queue(faults.status(429, _second_page, Retry_After="3600"))
    with faults.inject("http: Retry-After longer than max_wait"):
        with pytest.raises(SourceError) as raised:
            extract_partition(fresh_warehouse, OffsetPagedSource(server.url, waits), DAY)
        message = str(raised.value)
        assert "http_fault_probe: GET /incidents: asked to wait 3600s" in message
        assert "retried by the next run" in message
        assert waits == []  # no hour-long sleep inside a run
        with fresh_warehouse.connection() as conn:
            assert faults.raw_rows(conn) == 0  # page one was fetched, nothing of it landed


@pytest.mark.parametrize("fault", ["503", "reset", "truncate", "hang"])
def test_persistent_faults_fail_the_partition_whole_naming_the_request(
        fault, server, fresh_warehouse, clean_rows):
    waits: list[float] = []
    make = {"503": lambda: faults.status(503, _second_page, times=99),
            "reset": lambda: faults.reset(_second_page, times=99),
            "truncate": lambda: faults.truncate(_second_page, times=99),
            "hang": lambda: faults.hang(0.6, _second_page, times=99)}[fault]
    server.queue(make())
    with faults.inject(f"http: persistent {fault}"):
        with pytest.raises(SourceError) as raised:
            extract_partition(fresh_warehouse, OffsetPagedSource(server.url, waits, timeout=0.2, retries=2), DAY)
        message = str(raised.value)
        assert message.startswith("http_fault_probe: GET /incidents")
        assert "after 3 attempts" in message
        assert TOKEN not in message
        assert len(waits) == 2  # retried, then gave up: the cap on attempts holds
        with fresh_warehouse.connection() as conn:
            assert faults.raw_rows(conn) == 0
            assert conn.execute("select count(*) from dora_raw.extract_log").fetchone()[0] == 0


def test_a_failed_rerun_leaves_the_previous_landing_of_the_partition_intact(server, fresh_warehouse, clean_rows):
    extract_partition(fresh_warehouse, OffsetPagedSource(server.url, []), DAY)
    server.queue(faults.status(502, _second_page, times=99))
    with faults.inject("http: re-run of a landed partition fails"):
        with pytest.raises(SourceError):
            extract_partition(fresh_warehouse, OffsetPagedSource(server.url, [], retries=1), DAY)
        with fresh_warehouse.connection() as conn:
            faults.assert_same_rows(clean_rows, faults.snapshot(conn), "previous landing")


def test_client_errors_are_not_retried_and_never_echo_the_token():
    def echoing(request: faults.Request) -> faults.Reply:
        # Some APIs quote the credential they refused; the message must not repeat it.
        return faults.json_reply({"error": f"invalid credential {request.headers.get('Authorization')}"}, 401)

    waits: list[float] = []
    with faults.FaultyServer(echoing) as srv, faults.inject("http: 401 echoing the token"):
        client = HttpClient(srv.url, name="probe", headers={"Authorization": f"Token token={TOKEN}"},
                            timeout=1, max_retries=3, sleep=waits.append)
        with pytest.raises(SourceError) as raised:
            client.get_json("incidents")
        assert "probe: GET /incidents failed with HTTP 401" in str(raised.value)
        assert TOKEN not in str(raised.value)
        assert waits == [] and len(srv.log) == 1


def test_connection_refused_is_retried_then_fails_clearly():
    with faults.FaultyServer(pagerduty_shaped) as srv:
        url = srv.url
    waits: list[float] = []  # the server is gone: nothing listens on its port
    client = HttpClient(url, name="probe", timeout=0.5, max_retries=2, backoff_base=0.01, sleep=waits.append)
    with faults.inject("http: connection refused"):
        with pytest.raises(SourceError, match=r"probe: GET /incidents failed after 3 attempts: ConnectionError"):
            client.get_json("incidents")
        assert len(waits) == 2


def test_the_session_is_a_plain_requests_session_without_hidden_retries():
    # Retries are HttpClient's, counted and capped; urllib3's own would multiply them.
    client = HttpClient("http://127.0.0.1:9", name="probe")
    adapter = client.session.get_adapter("http://127.0.0.1:9/")
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    assert adapter.max_retries.total == 0


def test_one_call_makes_at_most_its_attempts_in_requests_when_failures_alternate(server):
    # 5xx then a truncated body, over and over: invalid JSON used to be retried around
    # the status retries, (max_retries + 1) ** 2 = 36 requests for this one call.
    waits: list[float] = []
    server.queue(*[fault for _ in range(20) for fault in (faults.status(503), faults.truncate())])
    client = HttpClient(server.url, name="probe", headers={"Authorization": f"Token token={TOKEN}"},
                        timeout=1, max_retries=5, backoff_base=0.01, sleep=waits.append)
    with faults.inject("http: 503 and truncated JSON in turn"):
        with pytest.raises(SourceError, match=r"probe: GET /incidents returned invalid JSON after 6 attempts"):
            client.get_json("incidents")
        assert len(server.log) == 6 == client.requests_sent
        assert len(waits) == 5


class _AlwaysRenewed(RenewableAuth):
    """A credential the server refuses every other time and that is always renewable."""

    def __call__(self, request):
        return request

    def renewed(self, response) -> bool:
        return True


def test_a_renewed_credential_counts_as_one_of_the_attempts(server):
    # 401 (credential renewed) and 503 in turn: a renewal re-sent inside an attempt made
    # two requests per attempt; counted as an attempt, the call stops at max_retries + 1.
    server.queue(*[fault for _ in range(20) for fault in (faults.status(401), faults.status(503))])
    client = HttpClient(server.url, name="probe", timeout=1, max_retries=5, backoff_base=0.01,
                        sleep=lambda _: None)
    client.session.auth = _AlwaysRenewed()
    with faults.inject("http: 401 with a renewed credential and 503 in turn"):
        with pytest.raises(SourceError, match=r"probe: GET /incidents failed after 6 attempts"):
            client.get_json("incidents")
        assert len(server.log) == 6 == client.requests_sent
