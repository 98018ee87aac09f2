"""The Dagster code location loads, and materialising everything works."""

from __future__ import annotations

import dagster
from dagster import AssetKey, Definitions, materialize

from dora_pipeline.defs.assets import build_assets
from dora_pipeline.defs.definitions import defs
from dora_pipeline.defs.resources import WarehouseResource


def test_definitions_load():
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"dora_raw/synthetic", "dora_staging/stg_deployments", "dora_marts/service_metrics",
            "dora_metrics/service_metrics", "dora_metrics/team_metrics"} <= keys
    parents = {k.to_user_string() for k in graph.get(AssetKey(["dora_staging", "stg_deployments"])).parent_keys}
    assert {"dora_staging/stg_service_keys", "dora_raw/synthetic"} <= parents


def test_materialize_synthetic_partition_then_models_and_publish(settings, monkeypatch):
    for name, value in {
        "DORA_DATABASE_URL": settings.database_url.get(), "DORA_HOME": str(settings.home),
        "DORA_READER_ROLE": settings.reader_role, "DORA_PSEUDONYM_KEY": "k", "DORA_SYNTHETIC": "true",
        "DORA_SYNTHETIC_TEAMS": "2", "DORA_SYNTHETIC_SERVICES": "4", "DORA_SYNTHETIC_DAYS": "5",
        "DORA_SYNTHETIC_END": "2025-03-05",
    }.items():
        monkeypatch.setenv(name, value)
    assets = build_assets()
    synthetic = [a for a in assets if AssetKey(["dora_raw", "synthetic"]) in a.keys]
    resources = {"warehouse": WarehouseResource()}
    instance = dagster.DagsterInstance.ephemeral()
    for day in ("2025-03-04", "2025-03-05"):
        result = materialize(synthetic, partition_key=day, resources=resources, instance=instance)
        assert result.success
    rest = [a for a in assets if a not in synthetic and all(k.path[0] != "dora_raw" for k in a.keys)]
    result = materialize(rest, resources=resources, instance=instance)
    assert result.success
    events = result.get_asset_materialization_events()
    published = {e.asset_key.to_user_string(): e for e in events if e.asset_key.path[0] == "dora_metrics"}
    rows = published["dora_metrics/service_metrics"].materialization.metadata["rows"].value
    assert rows >= 4 * 3 and rows % 3 == 0  # every component, three windows each
    import psycopg

    with psycopg.connect(settings.database_url.get()) as conn:
        # two teams, the synthetic trunk-based team, a department, engineering
        assert conn.execute("select count(distinct group_ref) from dora_metrics.team_metrics").fetchone()[0] == 5
