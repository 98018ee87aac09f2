"""Orchestration: the definitions' wiring, the nightly schedule (Dagster's schedule test
context), running what it requests against the test database, and the automation
condition that rebuilds the models after an extract-only run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    DagsterInstance,
    Definitions,
    PartitionKeyRange,
    RunRequest,
    SkipReason,
    build_schedule_context,
    evaluate_automation_conditions,
    instance_for_test,
)

from dora_pipeline.config import Settings
from dora_pipeline.defs.assets import daily_partitions
from dora_pipeline.defs.definitions import build_definitions
from dora_pipeline.defs.resources import WarehouseResource
from dora_pipeline.sources import all_sources

SYNTHETIC = AssetKey(["dora_raw", "synthetic"])
GITHUB = AssetKey(["dora_raw", "github"])
SERVICE_METRICS = AssetKey(["dora_metrics", "service_metrics"])
TEAM_METRICS = AssetKey(["dora_metrics", "team_metrics"])
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
TICK = datetime(2025, 3, 10, 3, 0, tzinfo=UTC)  # the 03:00 UTC tick of 10 March
TODAY = datetime.now(UTC).date()


@pytest.fixture
def pipeline_env(settings, monkeypatch):
    """The environment of a deployment whose only configured vendor source is the
    synthetic organisation, pointing at this test's database."""
    env = {
        "DORA_DATABASE_URL": settings.database_url.get(), "DORA_HOME": str(settings.home),
        "DORA_READER_ROLE": settings.reader_role, "DORA_PSEUDONYM_KEY": "k", "DORA_SYNTHETIC": "true",
        "DORA_SYNTHETIC_TEAMS": "2", "DORA_SYNTHETIC_SERVICES": "4", "DORA_SYNTHETIC_DAYS": "40",
        # The models measure windows ending now: the organisation ends yesterday.
        "DORA_SYNTHETIC_END": (TODAY - timedelta(days=1)).isoformat(),
    }
    for name in ("DORA_LOOKBACK_DAYS", "GITHUB_TOKEN", "ARGOCD_KUBECONFIG", "KUBERNETES_SERVICE_HOST",
                 "BACKSTAGE_URL", "PAGERDUTY_TOKEN", "OPSGENIE_API_KEY", "SURVEY_DATABASE_URL",
                 "SURVEY_CSV_DIR", "DORA_PARTITIONS_START"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def defs(pipeline_env) -> Definitions:
    return build_definitions(Settings.from_env())


def nightly_request(defs: Definitions, when: datetime = TICK) -> RunRequest | SkipReason:
    schedule = defs.resolve_schedule_def("nightly_refresh")
    context = build_schedule_context(scheduled_execution_time=when, resources={"warehouse": WarehouseResource()})
    return schedule(context)


def range_keys(request: RunRequest) -> list[str]:
    partitions = daily_partitions(Settings.from_env())
    return partitions.get_partition_keys_in_range(
        PartitionKeyRange(request.tags[RANGE_START], request.tags[RANGE_END])
    )


def test_definitions_wire_partitions_checks_schedules_and_sensors(defs):
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for source in all_sources():
        node = graph.get(AssetKey(["dora_raw", source.name]))
        assert node.backfill_policy.max_partitions_per_run is None  # single run
        assert (node.partitions_def is not None) == source.partitioned
        checks = {k.name for k in graph.asset_check_keys if k.asset_key == node.key}
        assert checks == {"configured", "silent_crash", "fresh", "quarantine_growth"}
    # Models: all partitions of their raw inputs, rebuilt by the automation condition.
    stg = graph.get(AssetKey(["dora_staging", "stg_deployments"]))
    assert stg.partitions_def is None and stg.automation_condition is not None
    # One model build at a time across runs (the instance limits the pool to 1).
    assert stg.pools == {"dora_models"} and graph.get(SERVICE_METRICS).pools == {"dora_models"}
    assert graph.get(SERVICE_METRICS).automation_condition is not None
    assert {k.name for k in graph.asset_check_keys if k.asset_key == SERVICE_METRICS} == {
        "lead_time_coverage", "unknown_components", "windows_complete"}
    assert {k.name for k in graph.asset_check_keys if k.asset_key == TEAM_METRICS} == {"windows_complete"}
    assert {s.name for s in defs.schedules} == {"nightly_refresh", "source_freshness_hourly"}
    assert {s.name for s in defs.sensors} == {"argocd_poll", "alert_on_run_failure", "rebuild_models"}
    freshness = defs.resolve_job_def("source_freshness")
    assert freshness.asset_layer.executable_asset_keys == set()
    assert [n.name for n in freshness.graph.nodes] and all(n.name.endswith("_fresh") for n in freshness.graph.nodes)


def test_nightly_schedule_requests_the_configured_sources_for_yesterday_plus_look_back(defs, monkeypatch):
    request = nightly_request(defs)
    assert isinstance(request, RunRequest)
    assert request.run_key == "nightly-2025-03-09"
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2025-03-06", "2025-03-09")
    assert request.tags["dora/as_of"] == "2025-03-10T00:00:00+00:00"  # the tick's day, 00:00 UTC
    assert range_keys(request) == ["2025-03-06", "2025-03-07", "2025-03-08", "2025-03-09"]
    selected = set(request.asset_selection)
    assert len(selected) == len(request.asset_selection)  # no duplicates
    assert SYNTHETIC in selected and GITHUB not in selected  # GITHUB_TOKEN unset: not extracted
    models = {k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[0] != "dora_raw"}
    assert models <= selected
    job_keys = defs.resolve_job_def("nightly_refresh").asset_layer.executable_asset_keys
    assert selected <= job_keys

    # Evaluated twice, the same tick asks for the same run: the daemon launches it once.
    assert nightly_request(defs).run_key == request.run_key
    # The next night re-reads overlapping days under its own run key.
    following = nightly_request(defs, datetime(2025, 3, 11, 3, tzinfo=UTC))
    assert following.run_key == "nightly-2025-03-10"
    assert range_keys(following) == ["2025-03-07", "2025-03-08", "2025-03-09", "2025-03-10"]

    monkeypatch.setenv("DORA_LOOKBACK_DAYS", "0")
    assert range_keys(nightly_request(defs)) == ["2025-03-09"]
    monkeypatch.setenv("DORA_LOOKBACK_DAYS", "6")
    assert len(set(range_keys(nightly_request(defs)))) == 7
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_test")
    monkeypatch.setenv("GITHUB_ORGS", "acme")
    assert GITHUB in nightly_request(defs).asset_selection

    monkeypatch.setenv("DORA_PARTITIONS_START", "2025-03-10")
    assert isinstance(nightly_request(defs), SkipReason)


def _raw_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"select count(*) from dora_raw.{table}").fetchone()[0]
            for table in ("deployments", "pull_requests", "incidents", "extract_log", "quarantine")
        }


@pytest.mark.slow
def test_nightly_run_extracts_the_range_rebuilds_publishes_and_is_idempotent(defs, pipeline_env):
    request = nightly_request(defs, datetime.combine(TODAY, datetime.min.time(), UTC).replace(hour=3))
    days = [TODAY - timedelta(days=n) for n in (4, 3, 2, 1)]
    job = defs.resolve_job_def("nightly_refresh")
    with instance_for_test() as instance:
        cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor

        result = job.execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection
        )
        assert result.success
        url = pipeline_env["DORA_DATABASE_URL"]
        first = _raw_counts(url)
        with psycopg.connect(url) as conn:
            logged = conn.execute(
                "select partition_date from dora_raw.extract_log where source = 'synthetic' order by 1"
            ).fetchall()
        assert [d for (d,) in logged] == days

        # Dagster recorded one materialization per partition of the range.
        recorded = instance.get_materialized_partitions(SYNTHETIC)
        assert recorded == {d.isoformat() for d in days}

        materialized = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
        extract = materialized[SYNTHETIC]
        assert extract["rows"].value > 0 and extract["partitions_loaded"].value == 4
        assert extract["partition"].value == f"{days[0]}...{days[-1]}"
        assert f"| {days[-1]} |" in extract["rows_by_day"].value
        team = materialized[TEAM_METRICS]
        assert "| group |" in team["preview"].value
        assert team["org_group"].value == "group:default/engineering"
        for name in ("org_30d_deploys_per_day", "org_30d_lead_time_hours", "org_30d_change_failure_rate_pct"):
            assert isinstance(team[name].value, float)
        assert isinstance(materialized[SERVICE_METRICS]["median_component_30d_deploys_per_day"].value, float)

        checks = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
        assert checks[("service_metrics", "windows_complete")].passed
        assert checks[("team_metrics", "windows_complete")].passed
        assert checks[("synthetic", "silent_crash")].passed
        assert checks[("synthetic", "fresh")].passed

        # The run planned the models itself: nothing to rebuild afterwards.
        evaluation = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert evaluation.total_requested == 0

        # Re-running the same request (a retry, or the next night's overlap) adds nothing.
        assert job.execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection
        ).success
        assert _raw_counts(url) == first


def test_models_rebuild_after_an_extract_only_run_once(defs):
    instance = DagsterInstance.ephemeral()
    cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor
    # An extract partition materialized outside a run that plans the models (a UI
    # materialization or a backfill of the extract asset alone).
    instance.report_runless_asset_event(AssetMaterialization(SYNTHETIC, partition="2025-03-09"))
    evaluation = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    graph = defs.resolve_asset_graph()
    downstream = AssetSelection.assets(SYNTHETIC).downstream(include_self=False).resolve(graph)
    requested = {k for k in graph.get_all_asset_keys() if evaluation.get_num_requested(k)}
    assert downstream <= requested
    assert all(k.path[0] != "dora_raw" for k in requested)  # extracts are never re-run by it
    # Requested once: the next tick does not ask again.
    again = evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
    assert again.total_requested == 0
