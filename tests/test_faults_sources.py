"""Every HTTP source under injected faults, through a faulty server in front of its
vendor fake (``tests/fakes``): 429 with and without Retry-After, 502, 503, a reset
connection, a read timeout, truncated JSON, valid JSON missing a required field, and an
empty page in the middle of paging.

Each test first runs the partition clean, then empties dora_raw and runs it again with
the fault. Transient faults must be survived: the partition's rows are exactly those of
the clean run. A record missing a required field is quarantined with a reason naming
the field, and nothing else is lost. An empty page mid-paging may be survived or fail
the partition whole with a message naming the source, never land part of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

from dora_pipeline.pipeline import extract_partition
from dora_pipeline.sources import Source, SourceError
from dora_pipeline.sources.argocd import ArgoCDSource
from dora_pipeline.sources.backstage import BackstageSource
from dora_pipeline.sources.github import GitHubSource
from dora_pipeline.sources.opsgenie import OpsgenieSource
from dora_pipeline.sources.pagerduty import PagerDutySource
from dora_pipeline.warehouse import Warehouse

import faults
from conftest import settings_with
from fakes import backstage_fake, github_fake, k8s_argocd, opsgenie_api, pagerduty_api

module_warehouse, fresh_warehouse = faults.module_warehouse, faults.fresh_warehouse

DAY = date(2025, 3, 3)
D0 = datetime(2025, 3, 3, tzinfo=UTC)
TIMEOUT = 0.3  # the client's read timeout; a "hang" outlasts it


@dataclass
class Vendor:
    """How to run one source against its fake, and where its paging is."""

    name: str
    upstream: Callable  # (httpserver, tmp_path) -> context manager yielding the fake's base URL
    env: Callable[[str, object], dict]  # (faulty server URL, tmp_path) -> environment
    source: Callable[[list], Source]  # (waits) -> the source with tiny backoff and timeout
    second_page: Callable[[faults.Request], bool]  # a request in the middle of paging
    empty_page: Callable[[object, faults.Request], object]  # that page, empty, paging on
    drop_field: Callable[[object, faults.Request], object]  # that page, one item lacking a field
    dropped_reason: str  # what the quarantine reason says about it


# ------------------------------------------------------------------------ PagerDuty


@contextmanager
def _pagerduty(httpserver, tmp_path) -> Iterator[str]:
    fake = pagerduty_api.FakePagerDuty().install(httpserver)
    fake.incidents = [
        pagerduty_api.make_incident(f"PD{i:03d}", f"2025-03-03T{i:02d}:00:00Z", f"PSVC{i % 3}", number=i,
                                    status="resolved" if i % 2 else "triggered",
                                    resolved_at=f"2025-03-03T{i:02d}:40:00Z" if i % 2 else None)
        for i in range(1, 9)
    ]
    yield httpserver.url_for("/").rstrip("/")


def _pd_page(request: faults.Request) -> bool:
    return request.path == "/incidents" and request.query.get("offset") == ["2"]


def _pd_empty(document: dict, request: faults.Request) -> dict:
    return {**document, "incidents": [], "more": True}


def _pd_drop(document: dict, request: faults.Request) -> dict:
    first, *rest = document["incidents"]
    return {**document, "incidents": [{k: v for k, v in first.items() if k != "created_at"}, *rest]}


PAGERDUTY = Vendor(
    "pagerduty", _pagerduty,
    lambda url, tmp: {"PAGERDUTY_TOKEN": pagerduty_api.TOKEN, "PAGERDUTY_API_URL": url},
    lambda waits: PagerDutySource(page_size=2, backoff_base=0.001, timeout=TIMEOUT, sleep=waits.append),
    _pd_page, _pd_empty, _pd_drop, "opened_at: is missing",
)


# ------------------------------------------------------------------------- Opsgenie


@contextmanager
def _opsgenie(httpserver, tmp_path) -> Iterator[str]:
    fake = opsgenie_api.FakeOpsgenie().install(httpserver)
    fake.incidents = [
        opsgenie_api.make_incident(f"og-{i}", str(i), f"2025-03-03T{i:02d}:00:00Z",
                                   status="resolved" if i == 3 else "open",
                                   impacted_services=[f"svc-{i % 2}"])
        for i in range(1, 8)
    ]
    fake.logs = {"og-3": [opsgenie_api.log_entry("2025-03-03T03:00:00Z", "Incident created"),
                          opsgenie_api.log_entry("2025-03-03T03:25:00Z", "Incident resolved by System")]}
    yield httpserver.url_for("/").rstrip("/")


def _og_page(request: faults.Request) -> bool:
    return request.path == "/v1/incidents" and request.query.get("offset") == ["2"]


def _og_empty(document: dict, request: faults.Request) -> dict:
    # Opsgenie still links the next page; the page itself came back empty.
    return {**document, "data": []}


def _og_drop(document: dict, request: faults.Request) -> dict:
    first, *rest = document["data"]
    return {**document, "data": [{k: v for k, v in first.items() if k != "createdAt"}, *rest]}


OPSGENIE = Vendor(
    "opsgenie", _opsgenie,
    lambda url, tmp: {"OPSGENIE_API_KEY": opsgenie_api.API_KEY, "OPSGENIE_API_URL": url},
    lambda waits: OpsgenieSource(page_size=2, log_page_size=2, backoff_base=0.001, timeout=TIMEOUT,
                                 sleep=waits.append),
    _og_page, _og_empty, _og_drop, "opened_at: is missing",
)


# --------------------------------------------------------------------------- GitHub

GITHUB_TOKEN = "ghp_FAULTS0123456789abcdefSECRET"


@contextmanager
def _github(httpserver, tmp_path) -> Iterator[str]:
    fake = github_fake.FakeGitHub(GITHUB_TOKEN)
    fake.install(httpserver)
    fake.orgs = {"acme": ["acme/api", "acme/web"]}
    fake.prs += github_fake.merged_prs("acme/api", 7, D0) + github_fake.merged_prs("acme/web", 3, D0)
    fake.deployments += [
        github_fake.FakeDeployment("acme/api", n, f"{n:07x}abcdef", "production", D0 + timedelta(hours=n),
                                   [("success", D0 + timedelta(hours=n, minutes=5))])
        for n in range(1, 6)
    ]
    yield httpserver.url_for("/").rstrip("/")


def _graphql_variables(request: faults.Request) -> dict:
    try:
        return json.loads(request.body or b"{}").get("variables") or {}
    except ValueError:
        return {}


def _gh_page(request: faults.Request) -> bool:
    variables = _graphql_variables(request)
    return "searchQuery" in variables and variables.get("after") is not None


def _gh_empty(document: dict, request: faults.Request) -> dict:
    search = document["data"]["search"]
    after = _graphql_variables(request)["after"]
    return {"data": {"search": {**search, "nodes": [],
                                "pageInfo": {"hasNextPage": True, "endCursor": after}}}}


def _gh_drop(document: dict, request: faults.Request) -> dict:
    search = document["data"]["search"]
    first, *rest = search["nodes"]
    return {"data": {"search": {**search, "nodes": [
        {k: v for k, v in first.items() if k != "createdAt"}, *rest]}}}


GITHUB = Vendor(
    "github", _github,
    lambda url, tmp: {"GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_API_URL": url + "/api/v3", "GITHUB_ORGS": "acme"},
    lambda waits: GitHubSource(concurrency=1, page_size=3, backoff_base=0.001, max_retries=4, timeout=TIMEOUT,
                               sleep=waits.append),
    _gh_page, _gh_empty, _gh_drop, "opened_at: is missing",
)


# ------------------------------------------------------------------------ Backstage

BACKSTAGE_TOKEN = "backstage-faults-token-0123456789"


@contextmanager
def _backstage(httpserver, tmp_path) -> Iterator[str]:
    entities = [backstage_fake.group("eng")] + [
        backstage_fake.group(f"team-{t}", parent="eng", members=[f"user-{t}"]) for t in "abc"
    ] + [backstage_fake.user(f"user-{t}", member_of=[f"team-{t}"]) for t in "abc"] + [
        backstage_fake.component(f"svc-{n}", f"team-{'abc'[n % 3]}",
                                 annotations={"github.com/project-slug": f"acme/svc-{n}"})
        for n in range(6)
    ]
    backstage_fake.FakeBackstage(BACKSTAGE_TOKEN, entities).install(httpserver)
    yield httpserver.url_for("/").rstrip("/")


def _bs_page(request: faults.Request) -> bool:
    return request.path.endswith("/entities/by-query") and "cursor" in request.query


def _bs_empty(document: dict, request: faults.Request) -> dict:
    return {**document, "items": [], "pageInfo": {"nextCursor": request.query["cursor"][0]}}


def _bs_drop(document: dict, request: faults.Request) -> dict:
    first, *rest = document["items"]
    metadata = {k: v for k, v in first["metadata"].items() if k != "name"}
    return {**document, "items": [{**first, "metadata": metadata}, *rest]}


BACKSTAGE = Vendor(
    "backstage", _backstage,
    lambda url, tmp: {"BACKSTAGE_URL": url, "BACKSTAGE_TOKEN": BACKSTAGE_TOKEN},
    lambda waits: BackstageSource(page_size=3, backoff_base=0.001, max_retries=4, timeout=TIMEOUT,
                                  sleep=waits.append),
    _bs_page, _bs_empty, _bs_drop, "unreadable catalog entity (KeyError: 'name')",
)


# ---------------------------------------------------------------- ArgoCD (Kubernetes)


@contextmanager
def _argocd(httpserver, tmp_path) -> Iterator[str]:
    fake = k8s_argocd.FakeKubernetes()
    fake.applications = [
        k8s_argocd.make_application(
            f"svc-{n}", f"uid-{n}",
            history=[k8s_argocd.history_entry(i, f"{n:x}{i:x}" * 20, f"2025-03-03T{i + n:02d}:00:00Z",
                                              f"2025-03-03T{i + n:02d}:04:00Z") for i in range(1, 3)])
        for n in range(1, 8)
    ]
    fake.start()
    try:
        yield fake.url
    finally:
        fake.stop()


def _kubeconfig(url: str, tmp_path) -> dict:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "dora", "user": {"token": k8s_argocd.TOKEN}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "dora"}}],
    }))
    return {"ARGOCD_KUBECONFIG": str(path)}


def _k8s_page(request: faults.Request) -> bool:
    return request.path.endswith("/applications") and "continue" in request.query


def _k8s_empty(document: dict, request: faults.Request) -> dict:
    return {**document, "items": [], "metadata": {**document["metadata"],
                                                  "continue": request.query["continue"][0]}}


def _k8s_drop(document: dict, request: faults.Request) -> dict:
    first, *rest = document["items"]
    history = [{k: v for k, v in entry.items() if k != "deployedAt"} for entry in first["status"]["history"]]
    return {**document, "items": [{**first, "status": {**first["status"], "history": history}}, *rest]}


ARGOCD = Vendor(
    "argocd", _argocd, _kubeconfig,
    lambda waits: ArgoCDSource(page_size=2, backoff_base=0.001, timeout=TIMEOUT, sleep=waits.append),
    _k8s_page, _k8s_empty, _k8s_drop, "status.history[0].deployedAt: is missing",
)

VENDORS = {v.name: v for v in (PAGERDUTY, OPSGENIE, GITHUB, BACKSTAGE, ARGOCD)}

TRANSIENT: dict[str, Callable[[Vendor], list[faults.Fault]]] = {
    "429 with Retry-After": lambda v: [faults.status(429, v.second_page, Retry_After="2")],
    "429 without Retry-After": lambda v: [faults.status(429, v.second_page)],
    "502": lambda v: [faults.status(502, v.second_page)],
    "503": lambda v: [faults.status(503, v.second_page, times=2)],
    "connection reset": lambda v: [faults.reset(v.second_page)],
    "read timeout": lambda v: [faults.hang(TIMEOUT + 0.7, v.second_page)],
    "truncated JSON": lambda v: [faults.truncate(v.second_page)],
}


@contextmanager
def _setup(vendor: Vendor, httpserver, warehouse: Warehouse, tmp_path):
    """(faulty server, warehouse wired to it, the rows of a clean run); dora_raw is
    empty again when the block starts."""
    with vendor.upstream(httpserver, tmp_path) as base:
        server: faults.FaultyServer
        with faults.FaultyServer(faults.forward_to(base, lambda: server.url)) as server:
            wh = Warehouse(settings_with(warehouse.settings, DORA_HTTP_MAX_RETRIES="4",
                                         **vendor.env(server.url, tmp_path)))
            extract_partition(wh, vendor.source([]), DAY)
            with wh.connection() as conn:
                clean = faults.snapshot(conn)
                faults.truncate_raw(conn)
            assert faults.raw_rows_of(clean) > 0
            assert any(vendor.second_page(r) for r, _ in server.log), f"{vendor.name} never paged"
            server.log.clear()
            yield server, wh, clean


@pytest.mark.parametrize("fault", TRANSIENT)
@pytest.mark.parametrize("vendor", VENDORS)
def test_transient_faults_are_survived_with_the_rows_of_a_clean_run(
        vendor, fault, httpserver, fresh_warehouse, tmp_path):
    v = VENDORS[vendor]
    with _setup(v, httpserver, fresh_warehouse, tmp_path) as (server, wh, clean):
        waits: list[float] = []
        server.queue(*TRANSIENT[fault](v))
        with faults.inject(f"{vendor}: {fault}"):
            extract_partition(wh, v.source(waits), DAY)
            assert not server.pending(), f"the fault was never reached: {server.log}"
            with wh.connection() as conn:
                faults.assert_same_rows(clean, faults.snapshot(conn), f"{vendor}: {fault}")
            assert waits, "retried without waiting"
            if fault == "429 with Retry-After":
                assert 2.0 in waits


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_record_missing_a_required_field_is_quarantined_and_nothing_else_is_lost(
        vendor, httpserver, fresh_warehouse, tmp_path):
    v = VENDORS[vendor]
    with _setup(v, httpserver, fresh_warehouse, tmp_path) as (server, wh, clean):
        server.queue(faults.rewrite(v.drop_field, v.second_page))
        with faults.inject(f"{vendor}: valid JSON missing a required field"):
            result = extract_partition(wh, v.source([]), DAY)
            assert not server.pending()
            with wh.connection() as conn:
                landed = faults.snapshot(conn)
                reasons = conn.execute("select record_key, reason, payload from dora_raw.quarantine").fetchall()
            assert result.quarantined >= 1
            assert any(v.dropped_reason in reason for _, reason, _ in reasons), reasons
            # Every landed row is a clean-run row; only the quarantined record's are missing.
            for table, rows in landed.items():
                if table in ("quarantine", "extract_log"):
                    continue
                assert set(rows) <= set(clean[table]), table
            missing = faults.raw_rows_of(clean) - faults.raw_rows_of(landed)
            assert 0 < missing <= 3 * len(reasons)  # a record's rows (incident + its components)


@pytest.mark.parametrize("vendor", VENDORS)
def test_an_empty_page_mid_paging_never_lands_a_partial_partition(vendor, httpserver, fresh_warehouse, tmp_path):
    v = VENDORS[vendor]
    with _setup(v, httpserver, fresh_warehouse, tmp_path) as (server, wh, clean):
        server.queue(faults.rewrite(v.empty_page, v.second_page))
        with faults.inject(f"{vendor}: empty page mid-paging"):
            try:
                extract_partition(wh, v.source([]), DAY)
            except SourceError as exc:
                assert str(exc).startswith(f"{vendor}:"), exc
                with wh.connection() as conn:
                    assert faults.raw_rows(conn) == 0
            else:
                with wh.connection() as conn:
                    faults.assert_same_rows(clean, faults.snapshot(conn), f"{vendor}: empty page")
            assert not server.pending()


@pytest.mark.parametrize("vendor", VENDORS)
def test_persistent_failure_fails_the_partition_whole_with_a_clear_message(
        vendor, httpserver, fresh_warehouse, tmp_path):
    v = VENDORS[vendor]
    with _setup(v, httpserver, fresh_warehouse, tmp_path) as (server, wh, clean):
        server.queue(faults.status(503, v.second_page, times=99))
        with faults.inject(f"{vendor}: 503 until the retries run out"):
            with pytest.raises(SourceError) as raised:
                extract_partition(wh, v.source([]), DAY)
            message = str(raised.value)
            assert message.startswith(f"{vendor}:") and "503" in message, message
            assert "5 attempts" in message, message  # DORA_HTTP_MAX_RETRIES=4: a cap, then failure
            with wh.connection() as conn:
                assert faults.raw_rows(conn) == 0


# ------------------------------------------------------------- the retry budget

ATTEMPTS = 5  # DORA_HTTP_MAX_RETRIES=4 in _setup: one attempt and four retries per call


def _graphql_rate_limited(document: object, request: faults.Request) -> dict:
    """GitHub's primary limit on GraphQL: HTTP 200 with an error body."""
    return {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit already exceeded for user ID 1."}]}


def _spent_rate_limit(v: Vendor) -> faults.Fault:
    # GitHub's REST primary limit; reset a few seconds ahead (the sleep only records it).
    return faults.status(403, v.second_page, x_ratelimit_remaining="0",
                         x_ratelimit_reset=str(int(datetime.now(UTC).timestamp()) + 3))


# Each failure kind, one Fault per request so that they can be mixed in any order.
FAILURES: dict[str, Callable[[Vendor], faults.Fault]] = {
    "429 with Retry-After": lambda v: faults.status(429, v.second_page, Retry_After="1"),
    "5xx": lambda v: faults.status(503, v.second_page),
    "rate-limit headers with reset": _spent_rate_limit,
    "GraphQL 200 with RATE_LIMITED": lambda v: faults.rewrite(_graphql_rate_limited, v.second_page),
    "invalid JSON": lambda v: faults.truncate(v.second_page),
    "connection reset": lambda v: faults.reset(v.second_page),
}


def _failures_of(vendor: str) -> list[str]:
    """The kinds a vendor answers with: only GitHub's GraphQL rate-limits in a 200, and the
    Kubernetes API limits with 429 + Retry-After (its 403 is RBAC, failing at once)."""
    skip = {"github": set(), "argocd": {"rate-limit headers with reset"}}.get(
        vendor, set()) | ({"GraphQL 200 with RATE_LIMITED"} if vendor != "github" else set())
    return [kind for kind in FAILURES if kind not in skip]


def _second_page_requests(vendor: Vendor, server: faults.FaultyServer) -> int:
    return sum(1 for request, _ in server.log if vendor.second_page(request))


@pytest.mark.parametrize(("vendor", "kind"), [
    (vendor, kind) for vendor in VENDORS for kind in [*_failures_of(vendor), "all kinds in turn"]])
def test_a_call_makes_at_most_its_attempts_in_requests_whatever_fails(
        vendor, kind, httpserver, fresh_warehouse, tmp_path):
    v = VENDORS[vendor]
    kinds = _failures_of(vendor) if kind == "all kinds in turn" else [kind]
    with _setup(v, httpserver, fresh_warehouse, tmp_path) as (server, wh, clean):
        waits: list[float] = []
        # Far more failures than attempts, the kinds in turn: invalid JSON and rate limits
        # in a 200 used to be retried around the status retries, (n+1)^2 requests a call.
        server.queue(*[FAILURES[kinds[i % len(kinds)]](v) for i in range(4 * ATTEMPTS)])
        with faults.inject(f"{vendor}: {kind} on every attempt"):
            with pytest.raises(SourceError) as raised:
                extract_partition(wh, v.source(waits), DAY)
            message = str(raised.value)
            assert message.startswith(f"{vendor}:") and f"after {ATTEMPTS} attempts" in message, message
            sent = _second_page_requests(v, server)
            assert sent <= ATTEMPTS, (sent, server.injected())
            assert sent == ATTEMPTS, server.injected()  # and every retry was made
            assert len(waits) == ATTEMPTS - 1  # a wait between two attempts, none after the last
            if kind == "GraphQL 200 with RATE_LIMITED":
                assert set(waits) == {60.0}  # no reset header: a minute, as documented
            with wh.connection() as conn:
                assert faults.raw_rows(conn) == 0


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_wait_beyond_max_wait_is_refused_after_one_request_without_sleeping(
        vendor, httpserver, fresh_warehouse, tmp_path):
    v = VENDORS[vendor]
    with _setup(v, httpserver, fresh_warehouse, tmp_path) as (server, wh, clean):
        waits: list[float] = []
        server.queue(faults.status(429, v.second_page, times=99, Retry_After="86400"))
        with faults.inject(f"{vendor}: Retry-After of a day"):
            with pytest.raises(SourceError) as raised:
                extract_partition(wh, v.source(waits), DAY)
            assert "asked to wait 86400s" in str(raised.value), raised.value
            assert str(raised.value).startswith(f"{vendor}:")
            assert _second_page_requests(v, server) == 1
            assert waits == []
