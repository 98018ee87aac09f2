"""The Dagster code location: ``dagster dev`` from the repository root loads ``defs``.

Assets (assets.py), asset checks (checks.py), schedules (schedules.py) and sensors
(sensors.py), with the jobs they run:

- ``nightly_refresh``: extract partitions, every model and the publish, in one run (the
  nightly schedule narrows it to the configured sources and its date range);
- ``build_and_publish``: every model and the publish, from what dora_raw holds;
- ``source_freshness``: only the sources' freshness checks (hourly).
"""

from __future__ import annotations

from dagster import AssetKey, AssetSelection, Definitions, define_asset_job, in_process_executor

from ..config import Settings
from ..models import ModelGraph, load_models
from ..sources import all_sources
from .assets import build_assets, extract_key
from .checks import build_checks
from .resources import WarehouseResource
from .schedules import freshness_schedule, nightly_schedule
from .sensors import alert_on_run_failure, argocd_poll_sensor, rebuild_models_sensor

REBUILD = AssetSelection.groups("staging", "intermediate", "marts", "published")
# A run executes its steps in one process, in dependency order. A process per step
# (Dagster's default) spends seconds importing for SQL models that build in
# milliseconds, and parallel model builds race on `create schema if not exists`.
# Parallelism comes from runs instead: docs/deploy.md.
EXECUTOR = in_process_executor


def build_definitions(settings: Settings | None = None, graph: ModelGraph | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    assets = build_assets(settings, graph or load_models())
    extract_keys = {source: extract_key(source) for source in all_sources()}
    all_keys = [key for a in assets for key in a.keys]
    rebuild_keys = sorted((k for k in all_keys if k not in extract_keys.values()), key=AssetKey.to_user_string)
    checks, freshness_checks = build_checks(extract_keys, {k for k in all_keys if k.path[0] == "dora_metrics"})

    nightly_job = define_asset_job(
        "nightly_refresh",
        selection=AssetSelection.all(),
        description="Extract a range of daily partitions, rebuild every model and publish, in one run.",
    )
    models_job = define_asset_job(
        "build_and_publish",
        selection=REBUILD,
        description="Rebuild every SQL model from dora_raw and publish dora_metrics.",
    )
    freshness_job = define_asset_job(
        "source_freshness",
        selection=AssetSelection.checks(*freshness_checks),
        description="Evaluate each source's freshness check; extracts nothing.",
    )
    return Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[nightly_job, models_job, freshness_job],
        schedules=[nightly_schedule(nightly_job, extract_keys, rebuild_keys), freshness_schedule(freshness_job)],
        sensors=[argocd_poll_sensor(settings), alert_on_run_failure, rebuild_models_sensor(REBUILD)],
        resources={"warehouse": WarehouseResource()},
        executor=EXECUTOR,
    )


defs = build_definitions()
