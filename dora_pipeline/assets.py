"""Dagster assets: one extract asset per source (partitioned by UTC day), one asset per
SQL model (upstreams found by sqlglot), and the publication of the marts to
``dora_metrics`` as one multi-asset (one transaction)."""

# No `from __future__ import annotations`: Dagster inspects the context and resource annotations at runtime.

from datetime import date, datetime, timezone

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from .config import Settings
from .models import Model, ModelGraph, build_model, load_models, model_parameters, publish
from .pipeline import extract_partition
from .resources import WarehouseResource
from .sources import Source, all_sources

PUBLISHED_GROUP = "published"


def extract_key(source: Source) -> AssetKey:
    return AssetKey(["dora_raw", source.name])


def model_key(model: Model) -> AssetKey:
    return AssetKey([model.schema, model.name])


def published_key(model: Model) -> AssetKey:
    return AssetKey(["dora_metrics", model.name])


def daily_partitions(settings: Settings) -> DailyPartitionsDefinition:
    return DailyPartitionsDefinition(start_date=settings.partitions_start, timezone="UTC", end_offset=1)


def _extract_asset(source: Source, partitions: DailyPartitionsDefinition) -> AssetsDefinition:
    @asset(
        key=extract_key(source),
        description=f"{source.description or source.name} Writes dora_raw: {', '.join(source.writes)}.",
        partitions_def=partitions if source.partitioned else None,
        group_name="extract",
        kinds={"python", "postgres"},
    )
    def _extract(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        wh = warehouse.warehouse()
        wh.migrate()
        day = (
            date.fromisoformat(context.partition_key)
            if source.partitioned
            else datetime.now(timezone.utc).date()
        )
        result = extract_partition(wh, source, day)
        if result is None:
            reason = source.skip_reason(wh.settings)
            context.log.info(f"source {source.name} skipped: {reason}")
            return MaterializeResult(metadata={"skipped": reason or "", "rows": 0})
        return MaterializeResult(
            metadata={
                "rows": result.total_rows,
                "quarantined": result.quarantined,
                "rows_by_table": result.rows,
                "partition": day.isoformat(),
            }
        )

    return _extract


def _model_asset(model: Model, graph: ModelGraph, writers: dict[str, list[AssetKey]]) -> AssetsDefinition:
    deps = [model_key(m) for m in graph.upstream_models(model)]
    for table in graph.raw_tables(model):
        deps.extend(writers.get(table, []))
    columns = "\n".join(f"- `{c}`: {text}" for c, text in model.column_comments.items())

    @asset(
        key=model_key(model),
        deps=sorted(set(deps), key=lambda k: k.to_user_string()),
        description=model.description + (f"\n\nColumns:\n{columns}" if columns else ""),
        group_name=model.layer,
        kinds={"sql", "postgres"},
        metadata={"file": f"sql_models/{model.layer}/{model.path.name}"},
    )
    def _build(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        wh = warehouse.warehouse()
        as_of = datetime.now(timezone.utc)
        with wh.connection() as conn:
            rows = build_model(conn, model, model_parameters(wh.settings, as_of))
        return MaterializeResult(metadata={"rows": rows, "table": model.qualified, "as_of": as_of.isoformat()})

    return _build


def _publish_asset(graph: ModelGraph) -> AssetsDefinition:
    marts = graph.marts
    specs = [
        AssetSpec(
            published_key(m),
            deps=[model_key(m)],
            description=f"Published, read-only: {m.description}",
            group_name=PUBLISHED_GROUP,
            kinds={"postgres"},
        )
        for m in marts
    ]

    @multi_asset(specs=specs, name="publish_dora_metrics")
    def _publish(context: AssetExecutionContext, warehouse: WarehouseResource):
        """Copy every mart into dora_metrics in one transaction."""
        wh = warehouse.warehouse()
        with wh.connection() as conn:
            counts = publish(conn, marts, wh.settings.reader_role)
            preview = _team_preview(conn)
        for model in marts:
            metadata = {"rows": counts[model.name]}
            if model.name == "team_metrics" and preview:
                metadata["preview"] = MetadataValue.md(preview)
            yield MaterializeResult(asset_key=published_key(model), metadata=metadata)

    return _publish


def _team_preview(conn) -> str:
    rows = conn.execute(
        """
        select group_ref, deployments, deploys_per_day, deployment_frequency_tier,
               median_lead_time_hours, lead_time_tier, change_failure_rate_pct,
               change_failure_tier, median_time_to_restore_minutes, time_to_restore_tier
        from dora_metrics.team_metrics where window_days = 30 order by group_ref limit 50
        """
    ).fetchall()
    if not rows:
        return ""
    header = "| group | deploys (30d) | deploys/day | lead time h | CFR % | restore min |\n|---|---|---|---|---|---|\n"

    def cell(value, tier):
        return "–" if value is None else f"{value} ({tier})" if tier else f"{value}"

    return header + "\n".join(
        f"| {r[0]} | {r[1]} | {cell(r[2], r[3])} | {cell(r[4], r[5])} | {cell(r[6], r[7])} | {cell(r[8], r[9])} |"
        for r in rows
    )


def build_assets(settings: Settings | None = None, graph: ModelGraph | None = None) -> list[AssetsDefinition]:
    settings = settings or Settings.from_env()
    graph = graph or load_models()
    partitions = daily_partitions(settings)
    sources = all_sources()
    writers: dict[str, list[AssetKey]] = {}
    for source in sources:
        for table in source.writes:
            writers.setdefault(f"dora_raw.{table}", []).append(extract_key(source))
    assets = [_extract_asset(s, partitions) for s in sources]
    assets += [_model_asset(m, graph, writers) for m in graph.ordered()]
    assets.append(_publish_asset(graph))
    return assets
