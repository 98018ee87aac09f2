"""N nightly ticks publish what one backfill of those N days publishes (DESIGN §8).

The vendors are local fakes whose answers change from night to night: a PagerDuty
incident opened one night and resolved three nights later (after the look-back, so only
the open-incident revisit picks the resolution up), a GitHub PR merged one day and
deployed through ArgoCD the next, and an ArgoCD sync visible one night that has rolled
out of the Application's history when its day is extracted again. The schedule is
evaluated at each tick time and what it requests is executed; the backfill then runs
over the same days, into another database, against what the vendors know in the end
(ArgoCD's untrimmed history: the nightly runs saw every entry, the backfill must too)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from dagster import AssetKey, RunRequest, build_schedule_context, instance_for_test
from test_orchestration_plan import assert_same_rows, environment, fresh_database, published

from dora_pipeline.config import Settings
from dora_pipeline.defs.definitions import build_definitions
from dora_pipeline.defs.resources import WarehouseResource
from dora_pipeline.records import CatalogEntity
from dora_pipeline.warehouse import Warehouse
from dora_pipeline.warehouse.loader import load_partition

from fakes.github_fake import FakeGitHub, FakePR
from fakes.k8s_argocd import FakeKubernetes, history_entry, make_application
from fakes.pagerduty_api import TOKEN as PAGERDUTY_TOKEN
from fakes.pagerduty_api import FakePagerDuty, make_incident

GITHUB_TOKEN = "ghp_nightly_test_token"
D0 = date(2025, 3, 2)
DAYS = [D0 + timedelta(days=n) for n in range(6)]  # D0..D5
D1, D2, D3, D4, D5 = DAYS[1:]
TICKS = [
    datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=3)
    for day in DAYS[1:]
]
PAGERDUTY = AssetKey(["dora_raw", "pagerduty"])


def at(day: date, hour: int) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=hour)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# The organisation's history, as it happens.
INCIDENT_OPENED, INCIDENT_RESOLVED = at(D2, 10), at(D5, 9)  # resolved three nights later


def merged_pr(number: int, day: date) -> FakePR:
    """PR ``number`` of acme/checkout, opened at 09:00 and merged at 15:00 on ``day``."""
    sha, head = str(number) * 40, chr(ord("d") + number) * 40
    return FakePR("acme/checkout", number, at(day, 9), at(day, 15), merge_sha=sha, head_sha=head)


PRS = [merged_pr(1, D1), merged_pr(2, D3)]
# (id, revision, deployed): PR 1 ships on D2 (the incident follows two hours later), PR 2
# the day after its merge; the first sync is a redeploy.
SYNCS = [(1, "a" * 40, at(D1, 12)), (2, "1" * 40, at(D2, 8)), (3, "2" * 40, at(D4, 11))]
HISTORY_LIMIT = 1  # revisionHistoryLimit: the sync of D1 is gone by the next night


def catalog() -> list[CatalogEntity]:
    return [
        CatalogEntity("backstage", "group:default/team-a", "group", "default", "team-a"),
        CatalogEntity(
            "backstage", "component:default/checkout", "component", "default", "checkout",
            owner_ref="group:default/team-a",
            annotations={"argocd/app-name": "checkout", "github.com/project-slug": "acme/checkout",
                         "pagerduty.com/service-id": "PSVC1"},
        ),
    ]  # fmt: skip


class Vendors:
    """The three fakes, showing what each vendor shows at a given moment."""

    def __init__(self, httpserver, k8s: FakeKubernetes) -> None:
        self.pagerduty = FakePagerDuty().install(httpserver)
        self.github = FakeGitHub(GITHUB_TOKEN)
        self.github.orgs = {
            "acme": ["acme/checkout"]
        }  # the repository exists, no GitHub deployments
        self.github.install(httpserver)
        self.k8s = k8s

    def show(self, now: datetime, history_limit: int | None = HISTORY_LIMIT) -> None:
        resolved = now >= INCIDENT_RESOLVED
        self.pagerduty.incidents = [
            make_incident(
                "PA", iso(INCIDENT_OPENED), "PSVC1",
                status="resolved" if resolved else "triggered",
                resolved_at=iso(INCIDENT_RESOLVED) if resolved else None,
            )
        ] if now >= INCIDENT_OPENED else []  # fmt: skip
        self.github.prs = [pr for pr in PRS if pr.merged_at <= now]
        entries = [
            history_entry(i, sha, iso(done - timedelta(minutes=5)), iso(done))
            for i, sha, done in SYNCS
            if done <= now
        ]
        kept = entries[-history_limit:] if history_limit else entries
        self.k8s.applications = [make_application("checkout", "uid-checkout", history=kept)]


@pytest.fixture
def other_database(pg_server_url, template_db):
    with fresh_database(pg_server_url, template_db) as url:
        yield url


@pytest.fixture
def k8s():
    fake = FakeKubernetes().start()
    yield fake
    fake.stop()


def vendor_env(httpserver, k8s: FakeKubernetes, tmp_path) -> dict[str, str]:
    base = httpserver.url_for("/").rstrip("/")
    return {
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "GITHUB_REPOS": "acme/checkout",
        "GITHUB_API_URL": base + "/api/v3",
        "PAGERDUTY_TOKEN": PAGERDUTY_TOKEN,
        "PAGERDUTY_API_URL": base,
        "ARGOCD_KUBECONFIG": str(k8s.write_kubeconfig(tmp_path / "kubeconfig")),
        "DORA_LOOKBACK_DAYS": "1",
        "DORA_PARTITIONS_START": D0.isoformat(),
    }


def with_catalog(url: str, settings: Settings) -> None:
    wh = Warehouse(
        Settings.from_env({"DORA_DATABASE_URL": url, "DORA_READER_ROLE": settings.reader_role})
    )
    wh.migrate()
    with wh.connection() as conn:
        load_partition(conn, "backstage", D0, catalog(), snapshot_tables=("catalog_entities",))


def open_incidents(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select external_id, partition_date from dora_raw.incidents where resolved_at is null"
        ).fetchall()


@pytest.mark.slow
def test_nightly_ticks_publish_what_one_backfill_of_those_days_publishes(
    settings, database_url, other_database, monkeypatch, httpserver, k8s, tmp_path
):
    vendors = Vendors(httpserver, k8s)
    env = vendor_env(httpserver, k8s, tmp_path)
    environment(settings, monkeypatch, database_url, **env)
    with_catalog(database_url, settings)
    defs = build_definitions(Settings.from_env())
    schedule = defs.resolve_schedule_def("nightly_refresh")
    job = defs.resolve_job_def("nightly_refresh")
    with instance_for_test() as instance:
        for night, tick in enumerate(TICKS, start=1):
            vendors.show(tick)
            context = build_schedule_context(
                scheduled_execution_time=tick, resources={"warehouse": WarehouseResource()}
            )
            request = schedule(context)
            assert isinstance(request, RunRequest)
            assert request.tags["dora/as_of"] == (tick.replace(hour=0)).isoformat()
            result = job.execute_in_process(
                instance=instance, tags=request.tags, asset_selection=request.asset_selection
            )
            assert result.success
            extract = next(
                e.materialization.metadata for e in result.get_asset_materialization_events()
                if e.asset_key == PAGERDUTY and "rows" in e.materialization.metadata
                and "configured" in e.materialization.metadata
            )  # fmt: skip
            revisited = extract.get("revisited_open_incident_days")
            if night == 4:
                # D2 is outside the look-back now; it still holds an open incident.
                assert revisited is not None and revisited.value == D2.isoformat()
                assert open_incidents(database_url) == [("PA", D2)]
            if night == 5:
                assert revisited is not None and revisited.value == D2.isoformat()
                assert open_incidents(database_url) == []  # the resolution landed in place
        nightly = published(database_url)

    # What the nights saw stays: ArgoCD no longer shows the first two syncs.
    vendors.show(TICKS[-1])
    assert [e["id"] for e in k8s.applications[0]["status"]["history"]] == [3]
    with psycopg.connect(database_url) as conn:
        kept = conn.execute("select external_id from dora_raw.deployments order by 1").fetchall()
        assert kept == [("uid-checkout:1",), ("uid-checkout:2",), ("uid-checkout:3",)]
        week = conn.execute(
            "select deployments, lead_time_changes, failed_deployments, incidents,"
            " median_time_to_restore_minutes from dora_metrics.service_metrics"
            " where entity_ref = 'component:default/checkout' and window_days = 7"
        ).fetchone()
    # Three deploys, both PRs measured, the D2 deploy failed; the incident took 4,260 min.
    assert week == (3, 2, 1, 1, 4260)

    # One backfill of the same days into another database, the vendors as they end up
    # (with the history the nights saw).
    environment(settings, monkeypatch, other_database, **env)
    with_catalog(other_database, settings)
    vendors.show(TICKS[-1], history_limit=None)
    tags = {
        "dagster/asset_partition_range_start": DAYS[0].isoformat(),
        "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
    }
    with instance_for_test() as instance:
        backfill = job.execute_in_process(
            instance=instance, tags=tags, asset_selection=request.asset_selection
        )
        assert backfill.success
        assert (
            instance.get_run_by_id(backfill.run_id).tags["dora/as_of"] == request.tags["dora/as_of"]
        )
    assert_same_rows(nightly, published(other_database))
