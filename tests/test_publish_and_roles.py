"""Idempotency, publish atomicity under a broken model, and the read-only role."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dora_pipeline.models import ModelError, build_graph, load_models, parse_model
from dora_pipeline.pipeline import build_and_publish, extract_partition
from dora_pipeline.sources import get_source
from dora_pipeline.warehouse import Warehouse

from builders import AS_OF, at, build, component, deploy, group, incident, load, pr, sha
from conftest import settings_with

CONTRACT_TABLES = {"service_metrics", "service_metrics_weekly", "team_metrics", "team_metrics_weekly",
                   "benchmarks", "data_quality"}


def _snapshot(warehouse, schema: str, exclude=("loaded_at", "computed_at", "extracted_at", "last_extracted_at", "quarantined_at", "id")):
    out = {}
    with warehouse.connection() as conn:
        tables = [r[0] for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = %s order by 1", (schema,))]
        for table in tables:
            cols = [r[0] for r in conn.execute(
                "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
                "order by ordinal_position", (schema, table)) if r[0] not in exclude]
            select = ", ".join(f'"{c}"::text' for c in cols)
            out[table] = sorted(conn.execute(f'select {select} from "{schema}"."{table}"').fetchall(), key=repr)
    return out


@pytest.fixture
def synthetic(settings):
    return Warehouse(settings_with(settings, DORA_SYNTHETIC="true", DORA_SYNTHETIC_TEAMS="3",
                                   DORA_SYNTHETIC_SERVICES="6", DORA_SYNTHETIC_DAYS="10",
                                   DORA_SYNTHETIC_END="2025-03-10"))


def test_same_partition_twice_gives_identical_raw_and_published_tables(synthetic):
    synthetic.migrate()
    source = get_source("synthetic")
    for day in range(1, 11):
        extract_partition(synthetic, source, date(2025, 3, day))
    build_and_publish(synthetic, AS_OF)
    raw, published = _snapshot(synthetic, "dora_raw"), _snapshot(synthetic, "dora_metrics")
    assert raw["deployments"] and raw["pull_requests"] and raw["incidents"]
    extract_partition(synthetic, source, date(2025, 3, 5))
    build_and_publish(synthetic, AS_OF)
    assert _snapshot(synthetic, "dora_raw") == raw
    assert _snapshot(synthetic, "dora_metrics") == published


def test_synthetic_is_deterministic_per_day(synthetic):
    from dora_pipeline.sources import ExtractContext

    ctx = ExtractContext(settings=synthetic.settings, warehouse_url="unused")
    first = list(get_source("synthetic").extract(date(2025, 3, 4), ctx))
    second = list(get_source("synthetic").extract(date(2025, 3, 4), ctx))
    assert first == second and len(first) > 20


def test_broken_model_leaves_published_tables_in_place(warehouse, tmp_path):
    load(warehouse, [group("t"), component("api", "t"), deploy("api", at(3))])
    build(warehouse)
    with warehouse.connection() as conn:
        before = conn.execute("select entity_ref, window_days, deployments from dora_metrics.service_metrics order by 1, 2").fetchall()
    # The same graph with one mart replaced by a model that fails at build time.
    graph = load_models()
    broken = parse_model(Path("sql_models/marts/team_metrics.sql"), "marts",
                         "select 1 / (select count(*) - count(*) from dora_raw.deployments) as boom")
    models = [m for m in graph.ordered() if m.qualified != broken.qualified] + [broken]
    load(warehouse, [deploy("api", at(4))], day=date(2025, 3, 4))
    with pytest.raises(ModelError, match="marts/team_metrics.sql: failed to build: division by zero"):
        build_and_publish(warehouse, AS_OF, graph=build_graph(models))
    with warehouse.connection() as conn:
        after = conn.execute("select entity_ref, window_days, deployments from dora_metrics.service_metrics order by 1, 2").fetchall()
        tables = {r[0] for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'dora_metrics'")}
    assert after == before
    assert tables >= CONTRACT_TABLES


def _login_as_reader(warehouse, pg_server_url):
    """A login role granted the reader role, as an operator does for Backstage."""
    reader = warehouse.settings.reader_role
    login = reader + "_login"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'drop role if exists "{login}"')
        admin.execute(f'create role "{login}" login in role "{reader}"')
    params = conninfo_to_dict(warehouse.url)
    params["user"] = login
    params.pop("password", None)
    return login, make_conninfo(**params)


def test_reader_role_reads_dora_metrics_and_nothing_else(warehouse, pg_server_url):
    load(warehouse, [group("t"), component("api", "t"), deploy("api", at(3), sha(1)),
                     pr("api", 1, at(1), at(2), merge_sha=sha(1)), incident(["api"], at(3, 13), at(3, 14))])
    build(warehouse)
    login, url = _login_as_reader(warehouse, pg_server_url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            visible = {r[0] for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'dora_metrics'")}
            assert visible >= CONTRACT_TABLES
            for table in CONTRACT_TABLES:
                conn.execute(f"select * from dora_metrics.{table} limit 1")
            denied = [
                "insert into dora_metrics.benchmarks (metric) values ('x')",
                "update dora_metrics.service_metrics set deployments = 0",
                "delete from dora_metrics.team_metrics",
                "truncate dora_metrics.team_metrics",
                "create table dora_metrics.mine (a int)",
                "select * from dora_raw.deployments",
                "select * from dora_raw.survey_responses",
                "select * from dora_marts.service_metrics",
                "select * from dora_staging.stg_deployments",
                "select * from dora_intermediate.int_components",
                "select * from dora_lib.tier_bands",
            ]
            for statement in denied:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
        # Tables published later are readable too (default privileges + explicit grants).
        build_and_publish(warehouse, AS_OF + timedelta(days=1))
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("select count(*) from dora_metrics.service_metrics").fetchone()[0] == 3
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'drop role if exists "{login}"')


def test_reader_role_is_nologin_unless_a_password_is_set(warehouse, settings):
    with warehouse.connection() as conn:
        assert conn.execute("select rolcanlogin from pg_roles where rolname = %s",
                            (settings.reader_role,)).fetchone() == (False,)
    with_password = Warehouse(settings_with(settings, DORA_READER_PASSWORD="s3cret-reader"))
    with_password.migrate()
    with warehouse.connection() as conn:
        assert conn.execute("select rolcanlogin from pg_roles where rolname = %s",
                            (settings.reader_role,)).fetchone() == (True,)
