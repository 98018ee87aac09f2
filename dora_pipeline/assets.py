"""Dagster assets: one extract asset per source (partitioned by UTC day), one asset per
SQL model (upstreams found by sqlglot), and the publication of the marts to
``dora_metrics`` as one multi-asset (one transaction)."""

# No `from __future__ import annotations`: Dagster inspects the context and resource annotations at runtime.

import warnings
from datetime import UTC, date, datetime

import psycopg
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    AutomationCondition,
    BackfillPolicy,
    BetaWarning,
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
# Dagster concurrency pool of every model build and the publish. The instance limits it
# to one step at a time (dagster.yaml, deploy/dagster.yaml: `concurrency: pools:
# default_limit: 1`): two runs rebuilding the same table at once would collide.
MODEL_POOL = "dora_models"


def extract_key(source: Source) -> AssetKey:
    return AssetKey(["dora_raw", source.name])


def model_key(model: Model) -> AssetKey:
    return AssetKey([model.schema, model.name])


def published_key(model: Model) -> AssetKey:
    return AssetKey(["dora_metrics", model.name])


def daily_partitions(settings: Settings) -> DailyPartitionsDefinition:
    return DailyPartitionsDefinition(start_date=settings.partitions_start, timezone="UTC", end_offset=1)


def rebuild_after_upstream() -> AutomationCondition:
    """When a model rebuilds on its own: after any upstream changed (an extract run or a
    backfill of extract partitions, a rebuilt model), once no upstream is still running,
    and never while the model is already planned in a run or backfill. A run that
    updates the upstream and already plans the model (the nightly run, a backfill of
    everything) does not count as a change, so the model is not built twice."""
    return (
        AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("rebuild after upstream changed")


def _extract_asset(source: Source, partitions: DailyPartitionsDefinition) -> AssetsDefinition:
    @asset(
        key=extract_key(source),
        description=f"{source.description or source.name} Writes dora_raw: {', '.join(source.writes)}.",
        partitions_def=partitions if source.partitioned else None,
        # A backfill is one run that extracts its days in order: `dagster asset materialize
        # --partition-range` requires it, and a source's API quota is shared by its days anyway.
        backfill_policy=BackfillPolicy.single_run(),
        group_name="extract",
        kinds={"python", "postgres"},
    )
    def _extract(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        wh = warehouse.warehouse()
        wh.migrate()
        days = (
            [date.fromisoformat(key) for key in context.partition_keys]
            if source.partitioned
            else [datetime.now(UTC).date()]
        )
        reason = source.skip_reason(wh.settings)
        if reason:
            context.log.info(f"source {source.name} skipped: {reason}")
            return MaterializeResult(metadata={"skipped": reason, "rows": 0})
        loads = []
        for day in days:  # each day lands whole, in its own transaction
            load = extract_partition(wh, source, day)
            context.log.info(f"{source.name} {day}: {load.total_rows} rows, {load.quarantined} quarantined")
            loads.append(load)
        rows_by_table: dict[str, int] = {}
        for load in loads:
            for table, count in load.rows.items():
                rows_by_table[table] = rows_by_table.get(table, 0) + count
        metadata = {
            "rows": sum(load.total_rows for load in loads),
            "quarantined": sum(load.quarantined for load in loads),
            "rows_by_table": rows_by_table,
            "partition": days[0].isoformat() if len(days) == 1 else f"{days[0]}...{days[-1]}",
        }
        if len(loads) > 1:
            metadata["rows_by_day"] = MetadataValue.md(
                "| day | rows | quarantined |\n|---|---|---|\n"
                + "\n".join(f"| {load.partition_date} | {load.total_rows} | {load.quarantined} |" for load in loads)
            )
        with wh.connection() as conn:
            metadata.update(_extract_log_summary(conn, source.name))
        return MaterializeResult(metadata=metadata)

    return _extract


def _extract_log_summary(conn, source: str) -> dict:
    """What dora_raw.extract_log knows of a source: how many partitions landed, which."""
    count, first, last = conn.execute(
        "select count(*), min(partition_date), max(partition_date) from dora_raw.extract_log where source = %s",
        (source,),
    ).fetchone()
    summary: dict = {"partitions_loaded": count}
    if count:
        summary["partitions_span"] = f"{first}...{last}"
    return summary


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
        automation_condition=rebuild_after_upstream(),
        backfill_policy=BackfillPolicy.single_run(),
        pool=MODEL_POOL,
    )
    def _build(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        wh = warehouse.warehouse()
        as_of = datetime.now(UTC)
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
            automation_condition=rebuild_after_upstream(),
        )
        for m in marts
    ]

    @multi_asset(
        specs=specs, name="publish_dora_metrics", backfill_policy=BackfillPolicy.single_run(), pool=MODEL_POOL
    )
    def _publish(context: AssetExecutionContext, warehouse: WarehouseResource):
        """Copy every mart into dora_metrics in one transaction."""
        wh = warehouse.warehouse()
        with wh.connection() as conn:
            counts = publish(conn, marts, wh.settings.reader_role)
            preview = _team_preview(conn)
            trends = {
                name: _metadata_or_nothing(conn, query, context)
                for name, query in (
                    ("team_metrics", _organisation_medians),
                    ("service_metrics", _component_medians),
                    ("team_space_survey", _survey_response_rate),
                )
            }
        for model in marts:
            metadata = {"rows": counts[model.name]}
            if model.name == "team_metrics" and preview:
                metadata["preview"] = MetadataValue.md(preview)
            metadata.update(trends.get(model.name, {}))
            yield MaterializeResult(asset_key=published_key(model), metadata=metadata)

    return _publish


# Numeric metadata, so the UI plots the organisation's trend across materializations.
_MEASURES = (
    ("deploys_per_day", "deploys_per_day"),
    ("median_lead_time_hours", "lead_time_hours"),
    ("change_failure_rate_pct", "change_failure_rate_pct"),
    ("median_time_to_restore_minutes", "time_to_restore_minutes"),
    ("median_failed_deployment_recovery_minutes", "failed_deployment_recovery_minutes"),
    ("rework_rate_pct", "rework_rate_pct"),
)


def _metadata_or_nothing(conn, query, context) -> dict:
    """Trend metadata is a nicety: a query that fails (a mart whose columns changed)
    is logged and leaves the already-published tables alone."""
    try:
        with conn.transaction():
            return query(conn)
    except psycopg.Error as exc:
        context.log.warning(f"{query.__name__} skipped: {str(exc).strip().splitlines()[0]}")
        return {}


def _numbers(prefix: str, values) -> dict:
    return {
        f"{prefix}_{label}": MetadataValue.float(float(value))
        for (_, label), value in zip(_MEASURES, values, strict=True)
        if value is not None
    }


def _organisation_medians(conn) -> dict:
    """The root group's 30-day values: pooled events of every team (medians of events,
    never of team medians). Nothing when the catalog has no single root group; the
    median component is on service_metrics either way."""
    rows = conn.execute(
        "select group_ref, " + ", ".join(column for column, _ in _MEASURES)
        + " from dora_metrics.team_metrics where window_days = 30 and parent_ref is null"
    ).fetchall()
    if len(rows) != 1:
        return {}
    return {"org_group": rows[0][0], **_numbers("org_30d", rows[0][1:])}


def _component_medians(conn) -> dict:
    """The median component's 30-day values (components that never deployed left out)."""
    row = conn.execute(
        "select "
        + ", ".join(f"percentile_cont(0.5) within group (order by {column})" for column, _ in _MEASURES)
        + " from dora_metrics.service_metrics"
        " where window_days = 30 and deployment_frequency_tier is not null"
    ).fetchone()
    return _numbers("median_component_30d", row) if row else {}


def _survey_response_rate(conn) -> dict:
    """Response rate of the latest survey at the root group(s): a group's row counts its
    descendants' respondents too, so only roots add up without double counting."""
    if conn.execute("select to_regclass('dora_metrics.team_space_survey')").fetchone()[0] is None:
        return {}
    row = conn.execute(
        """
        select survey_id, 100.0 * sum(respondents) / nullif(sum(eligible_members), 0)
        from dora_metrics.team_space_survey
        where parent_ref is null
          and survey_id = (
              select survey_id from dora_metrics.team_space_survey
              order by period_end desc nulls last, survey_id desc limit 1
          )
        group by survey_id
        """
    ).fetchone()
    if not row or row[1] is None:
        return {}
    return {"latest_survey": row[0], "survey_response_rate_pct": MetadataValue.float(round(float(row[1]), 1))}


def _team_preview(conn) -> str:
    rows = conn.execute(
        """
        select group_ref, deployments, deploys_per_day, deployment_frequency_tier,
               median_lead_time_hours, lead_time_tier, change_failure_rate_pct,
               change_failure_tier, median_time_to_restore_minutes, time_to_restore_tier,
               median_failed_deployment_recovery_minutes, failed_deployment_recovery_tier, rework_rate_pct
        from dora_metrics.team_metrics where window_days = 30 order by group_ref limit 50
        """
    ).fetchall()
    if not rows:
        return ""
    header = (
        "| group | deploys (30d) | deploys/day | lead time h | CFR % | restore min | recovery min | rework % |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )

    def cell(value, tier):
        return "–" if value is None else f"{value} ({tier})" if tier else f"{value}"

    return header + "\n".join(
        f"| {r[0]} | {r[1]} | {cell(r[2], r[3])} | {cell(r[4], r[5])} | {cell(r[6], r[7])} | {cell(r[8], r[9])} "
        f"| {cell(r[10], r[11])} | {cell(r[12], None)} |"
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
    with warnings.catch_warnings():
        # backfill_policy is "beta" in Dagster 1.13; one warning per asset buries the log.
        warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")
        assets = [_extract_asset(s, partitions) for s in sources]
        assets += [_model_asset(m, graph, writers) for m in graph.ordered()]
        assets.append(_publish_asset(graph))
    return assets
