"""The Backstage source against a local catalog API answering in Backstage's shapes."""

from __future__ import annotations

import json
import math
from datetime import date

import pytest
from werkzeug import Response

from dora_pipeline.pipeline import extract_partition
from dora_pipeline.sources import SourceError, get_source
from dora_pipeline.sources.backstage import BackstageSource, catalog_url
from dora_pipeline.warehouse import Warehouse

from conftest import settings_with
from fakes.backstage_fake import FakeBackstage, component, group, relation, user

TOKEN = "backstage-static-token-SECRET-42"
DAY = date(2025, 3, 3)


def _catalog() -> list[dict]:
    return [
        component(
            "payments-api",
            "team-a",
            annotations={
                "github.com/project-slug": "acme/payments-api",
                "argocd/app-name": "payments-prod",
                "pagerduty.com/service-id": "PABC123",
            },
        ),
        component(
            "Web-Shop",
            "group:Platform/Team-B",
            annotations={"github.com/project-slug": "acme/web-shop"},
        ),
        component("legacy-batch", "team-a"),  # no mapping annotations: events fall back to its name
        component(
            "billing",
            namespace="finance",
            owner="billing-team",
            annotations={"opsgenie.com/service-id": "4513b7ea-3b91-438f-b7e4-e3e54af9147c"},
        ),
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "owned-by-relation"},
            "spec": {"type": "library"},
            "relations": [relation("ownedBy", "group:default/team-a")],
        },
        group("engineering", members=[]),
        group("team-a", parent="engineering", members=["jane", "user:default/Kim"]),
        group(
            "team-b",
            namespace="platform",
            relations=[
                relation("childOf", "group:default/engineering"),
                relation("hasMember", "user:default/lee"),
            ],
        ),
        group(
            "billing-team", namespace="finance", parent="group:default/engineering", members=["max"]
        ),
        user("jane", member_of=["team-a"]),
        user("kim", relations=[relation("memberOf", "group:default/team-a")]),
        user("lee", member_of=["group:platform/team-b", "team-a"]),
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "System",
            "metadata": {"name": "shop"},
            "spec": {},
        },
    ]


@pytest.fixture
def waits() -> list[float]:
    return []


def _source(waits, **overrides) -> BackstageSource:
    options = dict(page_size=3, backoff_base=0.001, max_retries=2, timeout=2.0, sleep=waits.append)
    options.update(overrides)
    return BackstageSource(**options)


def _warehouse(settings, httpserver, path: str = "", token: str | None = TOKEN) -> Warehouse:
    env = {"BACKSTAGE_URL": httpserver.url_for(path or "/").rstrip("/")}
    if token:
        env["BACKSTAGE_TOKEN"] = token
    return Warehouse(settings_with(settings, **env))


def _entities(warehouse) -> dict[str, tuple]:
    with warehouse.connection() as conn:
        return {
            r[0]: r[1:]
            for r in conn.execute(
                "select entity_ref, kind, namespace, name, owner_ref, parent_ref, spec_type, lifecycle, annotations "
                "from dora_raw.catalog_entities"
            )
        }


def _memberships(warehouse) -> set[tuple[str, str]]:
    with warehouse.connection() as conn:
        return set(
            conn.execute("select group_ref, user_ref from dora_raw.group_memberships").fetchall()
        )


def test_catalog_url():
    assert (
        catalog_url("https://backstage.example.com") == "https://backstage.example.com/api/catalog"
    )
    assert (
        catalog_url("https://backstage.example.com/api/catalog/")
        == "https://backstage.example.com/api/catalog"
    )
    assert catalog_url("https://example.com/portal") == "https://example.com/portal/api/catalog"


def test_skipped_without_url(settings):
    source = get_source("backstage")
    assert isinstance(source, BackstageSource)
    assert source.skip_reason(settings) == "BACKSTAGE_URL is not set"
    assert extract_partition(Warehouse(settings), source, DAY) is None
    assert source.partitioned is False
    assert source.snapshot_tables == ("catalog_entities", "group_memberships")


def test_catalog_lands_whole_through_cursor_pages(settings, httpserver, waits):
    fake = FakeBackstage(TOKEN, _catalog())
    fake.install(httpserver)
    warehouse = _warehouse(settings, httpserver)
    result = extract_partition(warehouse, _source(waits), DAY)

    # 12 Components/Groups/Users in pages of 3; the System is not asked for.
    assert len(fake.requests) == math.ceil(12 / 3)
    first, *later = fake.requests
    assert first["filter"] == ["kind=component", "kind=group", "kind=user"]
    assert first["limit"] == ["3"] and "metadata.annotations" in first["fields"][0]
    for request in later:
        assert set(request) == {"cursor", "limit", "fields"}  # the cursor carries the query
        assert request["limit"] == ["3"] and request["fields"] == first["fields"]
    assert result.quarantined == 0

    entities = _entities(warehouse)
    assert len(entities) == 12
    assert entities["component:default/payments-api"] == (
        "component",
        "default",
        "payments-api",
        "group:default/team-a",
        None,
        "service",
        "production",
        {
            "github.com/project-slug": "acme/payments-api",
            "argocd/app-name": "payments-prod",
            "pagerduty.com/service-id": "PABC123",
        },
    )
    assert entities["component:default/web-shop"][3] == "group:platform/team-b"
    assert entities["component:default/legacy-batch"][3:] == (
        "group:default/team-a",
        None,
        "service",
        "production",
        {},
    )
    # shorthand refs resolve in the referring entity's namespace
    assert entities["component:finance/billing"][3] == "group:finance/billing-team"
    assert entities["component:default/owned-by-relation"][3] == "group:default/team-a"
    # the group tree: spec.parent, else the childOf relation
    assert entities["group:default/team-a"][4] == "group:default/engineering"
    assert entities["group:platform/team-b"][4] == "group:default/engineering"
    assert entities["group:finance/billing-team"][4] == "group:default/engineering"
    assert entities["group:default/engineering"][4] is None
    assert entities["user:default/jane"][:3] == ("user", "default", "jane")
    assert "system:default/shop" not in entities

    # membership: User spec.memberOf and Group spec.members (and their relations) together
    assert _memberships(warehouse) == {
        ("group:default/team-a", "user:default/jane"),
        ("group:default/team-a", "user:default/kim"),
        ("group:default/team-a", "user:default/lee"),
        ("group:platform/team-b", "user:default/lee"),
        ("group:finance/billing-team", "user:finance/max"),
    }

    # Entity resolution works on the stored annotations; unmapped components have none.
    with warehouse.connection() as conn:
        by_slug = dict(
            conn.execute(
                "select annotations->>'github.com/project-slug', entity_ref from dora_raw.catalog_entities "
                "where kind = 'component' and annotations ? 'github.com/project-slug'"
            ).fetchall()
        )
        unmapped = [
            r[0]
            for r in conn.execute(
                "select entity_ref from dora_raw.catalog_entities where kind = 'component' and annotations = '{}'::jsonb "
                "order by 1"
            )
        ]
    assert by_slug == {
        "acme/payments-api": "component:default/payments-api",
        "acme/web-shop": "component:default/web-shop",
    }
    assert unmapped == ["component:default/legacy-batch", "component:default/owned-by-relation"]


def test_snapshot_replaces_what_is_gone_upstream(settings, httpserver, waits):
    fake = FakeBackstage(TOKEN, _catalog())
    fake.install(httpserver)
    warehouse = _warehouse(settings, httpserver)
    extract_partition(warehouse, _source(waits), DAY)
    fake.entities = [
        e for e in fake.entities if e["metadata"]["name"] not in ("legacy-batch", "lee")
    ]
    extract_partition(warehouse, _source(waits), date(2025, 3, 4))
    entities = _entities(warehouse)
    assert "component:default/legacy-batch" not in entities and "user:default/lee" not in entities
    memberships = _memberships(warehouse)
    assert ("group:default/team-a", "user:default/lee") not in memberships  # only lee said so
    assert ("group:default/team-a", "user:default/jane") in memberships


def test_bad_entities_are_quarantined_with_the_reason(settings, httpserver, waits):
    entities = _catalog() + [
        component("Bad Name With Spaces", "team-a"),
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": {"title": "no name"},
            "spec": {},
        },
    ]
    FakeBackstage(TOKEN, entities).install(httpserver)
    warehouse = _warehouse(settings, httpserver)
    result = extract_partition(warehouse, _source(waits, page_size=50), DAY)
    assert result.rows["catalog_entities"] == 12
    with warehouse.connection() as conn:
        reasons = sorted(r[0] for r in conn.execute("select reason from dora_raw.quarantine"))
    assert len(reasons) == 2
    assert reasons[0].startswith("entity_ref: is not a full lower-case entity ref")
    assert reasons[1].startswith("payload: unreadable catalog entity (KeyError")


def test_works_without_a_token_and_under_a_path_prefix(settings, httpserver, waits):
    fake = FakeBackstage(None, _catalog())
    fake.install(httpserver, prefix="/portal")
    warehouse = _warehouse(settings, httpserver, path="/portal", token=None)
    assert extract_partition(warehouse, _source(waits), DAY).rows["catalog_entities"] == 12


def _truncated() -> Response:
    return Response(
        '{"items": [{"kind": "Component", "metadata": {"na', content_type="application/json"
    )


def test_server_errors_are_retried(settings, httpserver, waits):
    fake = FakeBackstage(TOKEN, _catalog())
    fake.install(httpserver)
    fake.faults = [lambda: Response("upstream unavailable", status=503), _truncated]
    warehouse = _warehouse(settings, httpserver)
    assert extract_partition(warehouse, _source(waits), DAY).rows["catalog_entities"] == 12
    assert len(waits) == 2


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ([_truncated] * 3, "returned invalid JSON after 3 attempts"),
        ([lambda: Response("boom", status=502)] * 3, "failed after 3 attempts: HTTP 502"),
        (
            [
                lambda: Response(
                    json.dumps({"items": [], "totalItems": 0, "pageInfo": {}}),
                    content_type="application/json",
                )
            ],
            "refusing to replace the stored catalog",
        ),
    ],
    ids=["truncated-json", "502", "empty-catalog"],
)
def test_a_failed_extract_keeps_the_stored_catalog(settings, httpserver, waits, faults, message):
    fake = FakeBackstage(TOKEN, _catalog())
    fake.install(httpserver)
    warehouse = _warehouse(settings, httpserver)
    extract_partition(warehouse, _source(waits, page_size=50), DAY)
    before = _entities(warehouse), _memberships(warehouse)
    fake.faults = list(faults)
    with pytest.raises(SourceError, match=message) as excinfo:
        extract_partition(warehouse, _source(waits, page_size=50), date(2025, 3, 4))
    assert TOKEN not in str(excinfo.value)
    assert (_entities(warehouse), _memberships(warehouse)) == before


def test_wrong_token_fails_clearly(settings, httpserver, waits):
    FakeBackstage(TOKEN, _catalog()).install(httpserver)
    warehouse = _warehouse(settings, httpserver, token="not-the-token")
    with pytest.raises(SourceError, match="HTTP 401") as excinfo:
        extract_partition(warehouse, _source(waits), DAY)
    assert "not-the-token" not in str(excinfo.value)
