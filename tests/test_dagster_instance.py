"""The production Dagster instance (deploy/dagster.yaml): dagster-postgres storage from
the environment, through psycopg2, on a real PostgreSQL (the embedded test server).

A partitioned materialization through the Python API and a two-day backfill through
`dagster asset materialize --partition-range` (the CLI a person would type) land their
runs and events in Postgres; the local instance (./dagster.yaml) keeps `dagster dev`
working with no configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, materialize
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.storage.config import pg_config
from dagster_postgres.utils import pg_url_from_config
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dora_pipeline.defs.definitions import build_definitions

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DAGSTER = Path(sys.executable).with_name("dagster")
YESTERDAY = date.today() - timedelta(days=1)


def test_production_instance_reads_postgres_from_the_environment_with_psycopg2(monkeypatch):
    for name, value in {"DAGSTER_PG_HOST": "pg.internal", "DAGSTER_PG_PORT": "5433",
                        "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "s3cret",
                        "DAGSTER_PG_DB": "dagster_prod"}.items():
        monkeypatch.setenv(name, value)
    config, _ = dagster_instance_config(str(DEPLOY))
    storage = process_config(pg_config(), config["storage"]["postgres"])  # resolves the env vars
    assert storage.success, storage.errors
    url = pg_url_from_config(storage.value)
    # A plain postgresql:// would let SQLAlchemy 2.1 pick psycopg 3 (DESIGN §2).
    assert url == "postgresql+psycopg2://dagster:s3cret@pg.internal:5433/dagster_prod"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] > 0
    assert config["concurrency"]["pools"]["default_limit"] == 1  # one model build at a time


def test_local_instance_needs_no_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("DORA_HOME", str(tmp_path / "home"))
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    # What `dagster dev` does without DAGSTER_HOME: a temporary home, config from the cwd.
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "tmp_home"), config_dir=str(ROOT))) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"
    assert (tmp_path / "home" / "dagster" / "storage").is_dir()


@pytest.fixture
def dagster_home(pg_server_url, tmp_path):
    """DAGSTER_HOME with deploy/dagster.yaml pointed at a fresh database of the test server."""
    name = f"dagster_t{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    server = conninfo_to_dict(pg_server_url)
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    postgres_db = config["storage"]["postgres"]["postgres_db"]
    assert postgres_db["scheme"] == "postgresql+psycopg2"
    # Same file, other connection values: the embedded server listens on a unix socket
    # only, so the socket directory goes to libpq as the `host` parameter.
    postgres_db.update(
        hostname=server.get("host", "localhost") if not str(server.get("host", "")).startswith("/") else "",
        port=int(server.get("port", 5432)), username=server.get("user", "postgres"),
        password=server.get("password") or "", db_name=name,
    )
    if str(server.get("host", "")).startswith("/"):
        postgres_db["params"] = {"host": server["host"]}
    config["compute_logs"]["config"]["base_dir"] = str(tmp_path / "logs")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    yield home, make_conninfo(pg_server_url, dbname=name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def synthetic_env(settings, monkeypatch):
    env = {
        "DORA_DATABASE_URL": settings.database_url.get(), "DORA_HOME": str(settings.home),
        "DORA_READER_ROLE": settings.reader_role, "DORA_PSEUDONYM_KEY": "k", "DORA_SYNTHETIC": "true",
        "DORA_SYNTHETIC_TEAMS": "2", "DORA_SYNTHETIC_SERVICES": "4", "DORA_SYNTHETIC_DAYS": "10",
        "DORA_SYNTHETIC_END": YESTERDAY.isoformat(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.mark.slow
def test_partitioned_run_and_cli_backfill_are_recorded_in_postgres(dagster_home, synthetic_env):
    home, dagster_db = dagster_home
    days = [(YESTERDAY - timedelta(days=n)).isoformat() for n in (2, 1, 0)]

    instance = DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4

        defs = build_definitions()
        synthetic = defs.resolve_assets_def(AssetKey(["dora_raw", "synthetic"]))
        result = materialize([synthetic], instance=instance, partition_key=days[0])
        assert result.success
    finally:
        instance.dispose()

    # A two-day backfill of the extract, then every model and the publish, from the command
    # line in one run (`dora_raw/synthetic*` would miss dora_marts/benchmarks, which the
    # one-transaction publish needs too).
    backfill = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "-m", "dora_pipeline.defs.definitions",
         "--select", "dora_raw/synthetic,group:staging,group:intermediate,group:marts,group:published",
         "--partition-range", f"{days[1]}...{days[2]}"],
        cwd=ROOT, env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=300,
    )
    assert backfill.returncode == 0, backfill.stderr[-3000:]

    with psycopg.connect(dagster_db) as conn:
        runs = conn.execute("select status from runs order by create_timestamp").fetchall()
        assert runs == [("SUCCESS",), ("SUCCESS",)]
        partitions = conn.execute(
            """
            select partition from event_logs
            where dagster_event_type = 'ASSET_MATERIALIZATION' and asset_key = %s
            order by partition
            """,
            ('["dora_raw", "synthetic"]',),
        ).fetchall()
        assert [p for (p,) in partitions] == days
        published = conn.execute(
            "select count(*) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'"
            " and asset_key = %s", ('["dora_metrics", "team_metrics"]',),
        ).fetchone()[0]
        assert published == 1
        checks = conn.execute(
            "select count(*) from event_logs where dagster_event_type = 'ASSET_CHECK_EVALUATION'"
        ).fetchone()[0]
        assert checks > 0
    with psycopg.connect(synthetic_env["DORA_DATABASE_URL"]) as conn:
        logged = conn.execute(
            "select partition_date::text from dora_raw.extract_log where source = 'synthetic' order by 1"
        ).fetchall()
        assert [d for (d,) in logged] == days
        assert conn.execute("select count(*) from dora_metrics.team_metrics").fetchone()[0] > 0
