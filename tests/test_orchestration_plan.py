"""Every front door publishes the same rows (DESIGN §8 "One run plan", docs/operations.md).

Against real PostgreSQL databases: ``pipeline.run(start, end)`` into one, Dagster into
another, then every published table compared row for row (minus ``computed_at`` and
``data_quality.last_extracted_at``, the wall-clock times of the build and the extract).
Dagster runs the way the UI launches them: a single run over a partition range (the
tags a single-run backfill and `dagster asset materialize --partition-range` set), the
backfill daemon on an asset backfill, and the nightly schedule evaluated tick by tick."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    evaluate_automation_conditions,
    instance_for_test,
)
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dora_pipeline.config import Settings
from dora_pipeline.defs.assets import AS_OF_TAG
from dora_pipeline.defs.definitions import REBUILD, build_definitions
from dora_pipeline.pipeline import run
from dora_pipeline.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
START, END = date(2025, 2, 24), date(2025, 3, 9)  # 14 days
AS_OF = datetime(2025, 3, 10, tzinfo=UTC)
SYNTHETIC = AssetKey(["dora_raw", "synthetic"])
# Wall-clock times of the build and of the extract: the only columns allowed to differ.
CLOCK_COLUMNS = {"computed_at", "last_extracted_at"}
VENDOR_VARIABLES = (
    "GITHUB_TOKEN", "GITHUB_ORGS", "GITHUB_REPOS", "GITHUB_API_URL", "ARGOCD_KUBECONFIG",
    "KUBERNETES_SERVICE_HOST", "BACKSTAGE_URL", "PAGERDUTY_TOKEN", "PAGERDUTY_API_URL",
    "OPSGENIE_API_KEY", "SURVEY_DATABASE_URL", "SURVEY_CSV_DIR", "DORA_SYNTHETIC",
    "DORA_LOOKBACK_DAYS", "DORA_PARTITIONS_START",
)  # fmt: skip


@contextmanager
def fresh_database(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A second fresh, migrated database on the test server: the other front door's."""
    name = f"dora_other_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    params = conninfo_to_dict(pg_server_url)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture
def other_database(pg_server_url, template_db) -> Iterator[str]:
    with fresh_database(pg_server_url, template_db) as url:
        yield url


def environment(settings: Settings, monkeypatch, url: str, **extra: str) -> dict[str, str]:
    """The process environment of a deployment pointing at ``url``; every vendor off
    unless ``extra`` turns it on."""
    for name in VENDOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env = {
        "DORA_DATABASE_URL": url,
        "DORA_HOME": str(settings.home),
        "DORA_READER_ROLE": settings.reader_role,
        "DORA_PSEUDONYM_KEY": "plan-key",
        **extra,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


SYNTHETIC_ENV = {
    "DORA_SYNTHETIC": "true",
    "DORA_SYNTHETIC_TEAMS": "2",
    "DORA_SYNTHETIC_SERVICES": "4",
    "DORA_SYNTHETIC_DAYS": "40",
    "DORA_SYNTHETIC_END": END.isoformat(),
}


def published(url: str) -> dict[str, list[tuple]]:
    """Every table of dora_metrics, its rows sorted, without the wall-clock columns."""
    with psycopg.connect(url) as conn:
        columns: dict[str, list[str]] = {}
        for table, column in conn.execute(
            "select table_name, column_name from information_schema.columns"
            " where table_schema = 'dora_metrics' order by table_name, ordinal_position"
        ):
            if column not in CLOCK_COLUMNS:
                columns.setdefault(table, []).append(column)
        return {
            table: sorted(
                conn.execute(
                    sql.SQL("select {} from {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, names)),
                        sql.Identifier("dora_metrics", table),
                    )
                ).fetchall(),
                key=repr,
            )
            for table, names in columns.items()
        }


def assert_same_rows(expected: dict[str, list[tuple]], actual: dict[str, list[tuple]]) -> None:
    assert sorted(actual) == sorted(expected)
    for table in expected:
        missing = [r for r in expected[table] if r not in actual[table]]
        extra = [r for r in actual[table] if r not in expected[table]]
        assert not missing and not extra, f"{table}: missing {missing[:3]}, extra {extra[:3]}"


def window_ends(url: str) -> set[datetime]:
    with psycopg.connect(url) as conn:
        return {
            end
            for table in ("service_metrics", "team_metrics")
            for (end,) in conn.execute(
                sql.SQL("select distinct window_end from {}").format(
                    sql.Identifier("dora_metrics", table)
                )
            )
        }


def cli_run(env: dict[str, str], start: date, end: date) -> dict[str, list[tuple]]:
    """What `dora-pipeline run --start --end` publishes (its function, same code path)."""
    result = run(Warehouse(Settings.from_env(env)), start, end)
    assert result.as_of == datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
    return published(env["DORA_DATABASE_URL"])


def model_as_ofs(result) -> set[str]:
    return {
        e.materialization.metadata["as_of"].value
        for e in result.get_asset_materialization_events()
        if "as_of" in e.materialization.metadata
    }


def execute(defs: Definitions, instance: DagsterInstance, keys, tags: dict[str, str]):
    job = defs.resolve_job_def("nightly_refresh")
    result = job.execute_in_process(instance=instance, tags=tags, asset_selection=list(keys))
    assert result.success
    return result


@pytest.mark.slow
def test_a_backfill_run_publishes_exactly_what_run_publishes_and_reruns_change_nothing(
    settings, database_url, other_database, monkeypatch
):
    expected = cli_run(
        environment(settings, monkeypatch, database_url, **SYNTHETIC_ENV), START, END
    )
    assert expected["service_metrics"] and expected["team_metrics"] and expected["benchmarks"]

    environment(settings, monkeypatch, other_database, **SYNTHETIC_ENV)
    defs = build_definitions(Settings.from_env())
    with instance_for_test() as instance:
        # Inside the instance's context: resolving the graph reads the current instance's
        # definitions-state storage (another test's disposed instance must not be it).
        every_asset = defs.resolve_asset_graph().get_all_asset_keys()
        # Materialize all, one run over the range: what a single-run backfill launches.
        tags = {RANGE_START: START.isoformat(), RANGE_END: END.isoformat()}
        result = execute(defs, instance, every_asset, tags)
        backfilled = published(other_database)
        assert_same_rows(expected, backfilled)
        # One as_of for every model and the publish, shown as the run's tag.
        assert model_as_ofs(result) == {AS_OF.isoformat()}
        assert instance.get_run_by_id(result.run_id).tags[AS_OF_TAG] == AS_OF.isoformat()
        assert window_ends(other_database) == {AS_OF}
        # The sources without credentials are visibly not configured: a failed WARN check.
        checks = {
            (e.asset_key.path[-1], e.check_name): e
            for e in result.get_asset_check_evaluations()
            if e.check_name == "configured"
        }
        assert checks[("synthetic", "configured")].passed
        github = checks[("github", "configured")]
        assert not github.passed and github.severity.value == "WARN"
        assert "GITHUB_TOKEN" in github.metadata["source not configured"].value

        # Re-running one extract partition, then the rebuild the sensor asks for: the
        # rebuild run names no partition and takes the as_of the latest partition implies.
        cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor
        mid = (START + timedelta(days=5)).isoformat()
        extract = defs.resolve_job_def("nightly_refresh")
        assert extract.execute_in_process(
            instance=instance, partition_key=mid, asset_selection=[SYNTHETIC]
        ).success
        evaluation = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        graph = defs.resolve_asset_graph()
        requested = {k for k in graph.get_all_asset_keys() if evaluation.get_num_requested(k)}
        assert requested and requested <= REBUILD.resolve(graph)
        rebuild = execute(defs, instance, requested, {})
        assert instance.get_run_by_id(rebuild.run_id).tags[AS_OF_TAG] == AS_OF.isoformat()
        assert_same_rows(expected, published(other_database))

        # Re-running the whole backfill.
        execute(defs, instance, every_asset, tags)
        assert_same_rows(expected, published(other_database))


def test_a_model_materialized_on_its_own_takes_the_latest_partition_never_the_clock(
    settings, database_url, monkeypatch
):
    environment(settings, monkeypatch, database_url, **SYNTHETIC_ENV)
    defs = build_definitions(Settings.from_env())
    with instance_for_test() as instance:
        graph = defs.resolve_asset_graph()
        job = defs.resolve_job_def("build_and_publish")
        # Nothing extracted yet: a clear error, not a window ending now.
        nothing = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not nothing.success
        failure = next(e for e in nothing.all_events if e.event_type_value == "STEP_FAILURE")
        assert "dora_raw.extract_log holds none yet" in str(failure.event_specific_data.error)
        extract = defs.resolve_job_def("nightly_refresh")
        for day in ("2025-03-03", "2025-03-04"):
            assert extract.execute_in_process(
                instance=instance, partition_key=day, asset_selection=[SYNTHETIC]
            ).success
        models = AssetSelection.groups("staging", "intermediate", "marts", "published")
        result = execute(defs, instance, models.resolve(graph), {})
        assert model_as_ofs(result) == {"2025-03-05T00:00:00+00:00"}
        assert window_ends(database_url) == {datetime(2025, 3, 5, tzinfo=UTC)}


@pytest.mark.slow
def test_an_asset_backfill_launched_as_the_ui_does_publishes_what_run_publishes(
    settings, database_url, other_database, monkeypatch
):
    """The UI's "Materialize all" over a range creates an asset backfill; the daemon
    splits it by partitions definition and backfill policy (Dagster 1.13): one run for the
    partitioned extracts over the range, one for the unpartitioned roots (the catalog and
    dora_marts/benchmarks), one for the models and the publish once the extracts landed.
    The last two name no partition: they take the backfill's range from its id."""
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    start = END - timedelta(days=2)
    expected = cli_run(
        environment(settings, monkeypatch, database_url, **SYNTHETIC_ENV), start, END
    )

    environment(settings, monkeypatch, other_database, **SYNTHETIC_ENV)
    synchronous = {
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "DefaultRunCoordinator",
        },
        "run_launcher": {
            "module": "dagster._core.launcher.sync_in_memory_run_launcher",
            "class": "SyncInMemoryRunLauncher",
        },
    }
    target = ModuleTarget("dora_pipeline.defs.definitions", "defs", str(ROOT), "dora_pipeline")
    with (
        instance_for_test(overrides=synchronous) as instance,
        create_test_daemon_workspace_context(target, instance) as workspace,
    ):
        graph = workspace.create_request_context().asset_graph
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id="ui",
            asset_graph=graph,
            partition_names=[(start + timedelta(days=i)).isoformat() for i in range(3)],
            asset_selection=list(graph.get_all_asset_keys()),
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=None,
            description=None,
            run_config=None,
        )
        instance.add_backfill(backfill)
        for _ in range(10):
            list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
            if instance.get_backfill("ui").status != BulkActionStatus.REQUESTED:
                break
        assert instance.get_backfill("ui").status == BulkActionStatus.COMPLETED_SUCCESS
        runs = instance.get_runs()
        assert len(runs) == 3 and all(r.status.value == "SUCCESS" for r in runs)
        assert {r.tags[AS_OF_TAG] for r in runs} == {"2025-03-10T00:00:00+00:00"}
        ranged = [r for r in runs if RANGE_START in r.tags]
        assert len(ranged) == 1 and ranged[0].tags[RANGE_END] == END.isoformat()
    assert_same_rows(expected, published(other_database))
    assert window_ends(other_database) == {AS_OF}
