"""Dagster assets: one extract asset per source (partitioned by UTC day), one asset per
SQL model (upstreams found by sqlglot), and the publication of the marts to
``dora_metrics`` as one multi-asset (one transaction). Every asset reads the run plan of
its run (``resolve_run_plan``: run tags, the backfill's range, else the latest extracted
partition), so a model never takes its as_of from the wall clock (docs/operations.md)."""

# No `from __future__ import annotations`: Dagster inspects the context and resource annotations at runtime.

import warnings
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import psycopg
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSpec,
    AutomationCondition,
    BackfillPolicy,
    BetaWarning,
    DagsterInstance,
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

# The tags Dagster sets on a single run over a partition range (a single-run backfill,
# `dagster asset materialize --partition-range`), on a one-partition run, and on every
# run a backfill launches.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PARTITION_NAME_TAG,
)

from ..config import Settings
from ..models import (
    GrainViolation,
    Model,
    ModelGraph,
    build_model,
    load_models,
    model_parameters,
    publish,
)
from ..pipeline import RunPlan, extract_partition, latest_extracted_day, planned_days
from ..sources import Source, all_sources
from ..text import markdown_table
from ..warehouse import Warehouse
from .resources import WarehouseResource

PUBLISHED_GROUP = "published"
# Run tag accepting a catalog that shrank past DORA_CATALOG_MAX_SHRINK_PCT (like `run --accept-catalog-shrink`).
ACCEPT_CATALOG_SHRINK_TAG = "dora/accept_catalog_shrink"
# Run tag rebuilding incremental models from all history (like `run --full-refresh`).
FULL_REFRESH_TAG = "dora/full_refresh"
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
    """UTC days from DORA_PARTITIONS_START to the last complete one (end_offset 0: the
    partition of a day exists once the day has ended)."""
    return DailyPartitionsDefinition(start_date=settings.partitions_start, timezone="UTC")


# ---------------------------------------------------------------- the run plan of a Dagster run

AS_OF_TAG = "dora/as_of"
CONFIGURED_CHECK = "configured"


def run_plan_tags(plan: RunPlan) -> dict[str, str]:
    """The run plan as run tags (shown on the run's page): the partition range Dagster's
    single-run backfills use, and the as_of every model of the run reads."""
    return {
        ASSET_PARTITION_RANGE_START_TAG: plan.start.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: plan.end.isoformat(),
        AS_OF_TAG: plan.as_of.isoformat(),
    }


def plan_from_tags(tags: Mapping[str, str]) -> RunPlan | None:
    """The plan a run's tags state: ``dora/as_of``, a partition range, or one partition.
    None when they state none (a backfill's model run, a rebuild, a manual click)."""
    start = tags.get(ASSET_PARTITION_RANGE_START_TAG) or tags.get(PARTITION_NAME_TAG)
    end = tags.get(ASSET_PARTITION_RANGE_END_TAG) or tags.get(PARTITION_NAME_TAG)
    as_of = _as_of(tags[AS_OF_TAG]) if tags.get(AS_OF_TAG) else None
    if start and end:
        return RunPlan.for_range(_day(start), _day(end), as_of)
    if as_of is not None:
        return RunPlan.for_range(as_of.date(), as_of.date(), as_of)
    return None


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Failure(f"run tag: {value!r} is not a daily partition key (YYYY-MM-DD)") from None


def _as_of(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Failure(f"run tag {AS_OF_TAG}: {value!r} is not an ISO date or timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _backfill_plan(context: AssetExecutionContext, backfill_id: str) -> RunPlan | None:
    """A backfill launches its models in a run of their own, without partition tags: the
    plan is the range the backfill targets."""
    backfill = context.instance.get_backfill(backfill_id)
    if backfill is None:
        return None
    keys = set(backfill.partition_names or ())
    if backfill.is_asset_backfill:
        target = backfill.get_asset_backfill_data(context.repository_def.asset_graph).target_subset
        for subset in target.partitions_subsets_by_asset_key.values():
            keys.update(subset.get_partition_keys())
    if not keys:
        return None
    ordered = sorted(_day(key) for key in keys)
    return RunPlan.for_range(ordered[0], ordered[-1])


def resolve_run_plan(
    context: AssetExecutionContext, wh: Warehouse, *, first_snapshot: bool = False
) -> RunPlan:
    """The run plan of this run, the same for every step of it.

    From the run's tags; for a backfill's model run, from the backfill's range; else (a
    rebuild after extract-only runs, a model materialized on its own) from the latest
    partition in dora_raw.extract_log; with ``first_snapshot`` (an unpartitioned source
    materialized on its own before any partition landed), the last complete UTC day. The
    first step that derives it writes it to the
    run's ``dora/as_of`` tag, so later steps (and the UI) read the same value.
    """
    tags = _current_tags(context.instance, context.run_id) or context.run.tags
    plan = plan_from_tags(tags)
    if plan is None and tags.get(BACKFILL_ID_TAG):
        plan = _backfill_plan(context, tags[BACKFILL_ID_TAG])
    if plan is None:
        latest = latest_extracted_day(wh)
        if latest is None and first_snapshot:
            latest = datetime.now(UTC).date() - timedelta(days=1)
        if latest is None:
            raise Failure(
                "no as_of for this run: it names no partitions and dora_raw.extract_log holds "
                "none yet. Materialize an extract partition first, or launch the run with the "
                f"tag {AS_OF_TAG}=YYYY-MM-DD."
            )
        plan = RunPlan.for_latest(latest)
    if tags.get(AS_OF_TAG) != plan.as_of.isoformat():
        context.instance.add_run_tags(context.run_id, {AS_OF_TAG: plan.as_of.isoformat()})
    return plan


def _current_tags(instance: DagsterInstance, run_id: str) -> Mapping[str, str] | None:
    run = instance.get_run_by_id(run_id)
    return run.tags if run is not None else None


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
    key = extract_key(source)

    @asset(
        key=key,
        description=f"{_sentence(source.description or source.name)}\n\nWrites dora_raw: {', '.join(source.writes)}.",
        partitions_def=partitions if source.partitioned else None,
        # A backfill is one run that extracts its days in order: `dagster asset materialize
        # --partition-range` requires it, and a source's API quota is shared by its days anyway.
        backfill_policy=BackfillPolicy.single_run(),
        group_name="extract",
        kinds={"python", "postgres"},
        check_specs=[
            AssetCheckSpec(
                CONFIGURED_CHECK,
                asset=key,
                description=(
                    "WARN when the source has no credentials: the run wrote nothing for it, "
                    "so its materialization is not an extract."
                ),
            )
        ],
    )
    def _extract(context: AssetExecutionContext, warehouse: WarehouseResource):
        wh = warehouse.migrated_warehouse()
        if context.run.tags.get(ACCEPT_CATALOG_SHRINK_TAG, "").strip().lower() == "true":
            wh = Warehouse(replace(wh.settings, accept_catalog_shrink=True))
        reason = source.skip_reason(wh.settings)
        if reason:
            # Still a materialization: a missing output would skip every model downstream
            # in the run. The failed WARN check is what the asset graph shows.
            context.log.warning(f"source {source.name} is not configured: {reason}")
            yield MaterializeResult(metadata={"configured": False, "skipped": reason, "rows": 0})
            yield _configured_check(reason)
            return
        plan = resolve_run_plan(context, wh, first_snapshot=not source.partitioned)
        if source.partitioned:
            keys = context.partition_keys
            plan = RunPlan.for_range(_day(keys[0]), _day(keys[-1]), plan.as_of)
        days = planned_days(wh, plan, source)
        loads = []
        for day in days:  # each day lands whole, in its own transaction
            load = extract_partition(wh, source, day)
            context.log.info(f"{source.name} {day}: {load.total_rows} rows, {load.quarantined} quarantined")
            loads.append(load)
        revisited = [load for load in loads if source.partitioned and load.partition_date < plan.start]
        for load in revisited:  # the partition's own history shows the re-extract
            context.log_event(AssetMaterialization(
                key, partition=load.partition_date.isoformat(),
                description="re-extracted: the day still held an open incident",
                metadata={"rows": load.total_rows, "quarantined": load.quarantined},
            ))
        yield MaterializeResult(metadata=_extract_metadata(wh, source.name, loads, revisited))
        yield _configured_check(None)

    return _extract


def _sentence(text: str) -> str:
    """A description that ends its sentence, so the next one does not run on in the UI."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _configured_check(reason: str | None) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=CONFIGURED_CHECK,
        passed=reason is None,
        severity=AssetCheckSeverity.WARN,
        metadata={"source not configured": reason} if reason else {},
    )


def _extract_metadata(wh: Warehouse, source: str, loads: list, revisited: list) -> dict:
    rows_by_table: dict[str, int] = {}
    for load in loads:
        for table, count in load.rows.items():
            rows_by_table[table] = rows_by_table.get(table, 0) + count
    ranged = [load for load in loads if load not in revisited] if revisited else loads
    first, last = ranged[0].partition_date, ranged[-1].partition_date
    metadata = {
        "configured": True,
        "rows": sum(load.total_rows for load in loads),
        "quarantined": sum(load.quarantined for load in loads),
        "rows_by_table": rows_by_table,
        "partition": first.isoformat() if first == last else f"{first}...{last}",
    }
    if revisited:
        metadata["revisited_open_incident_days"] = ", ".join(str(load.partition_date) for load in revisited)
    if len(loads) > 1:
        metadata["rows_by_day"] = MetadataValue.md(
            "| day | rows | quarantined |\n|---|---|---|\n"
            + "\n".join(f"| {load.partition_date} | {load.total_rows} | {load.quarantined} |" for load in loads)
        )
    with wh.connection() as conn:
        metadata.update(_extract_log_summary(conn, source))
    return metadata


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
        # The SQL's hash: the UI marks the asset "code version changed" when its file changed.
        code_version=model.code_version,
        automation_condition=rebuild_after_upstream(),
        backfill_policy=BackfillPolicy.single_run(),
        pool=MODEL_POOL,
        check_specs=[_grain_check_spec(model)] if model.grain else None,
    )
    def _build(context: AssetExecutionContext, warehouse: WarehouseResource):
        wh = warehouse.migrated_warehouse()
        as_of = resolve_run_plan(context, wh).as_of  # never the wall clock: docs/operations.md
        with wh.connection() as conn:
            full = context.run.tags.get(FULL_REFRESH_TAG, "").strip().lower() == "true"
            try:
                rows = build_model(conn, model, model_parameters(wh.settings, as_of), full_refresh=full)
            except GrainViolation as violation:
                # The build refused the table (the previous one stays): record the failed
                # audit where the UI shows checks, then fail the step.
                yield _grain_result(model, passed=False, duplicates=violation.count, examples=violation.examples)
                raise
        yield MaterializeResult(metadata={"rows": rows, "table": model.qualified, "as_of": as_of.isoformat()})
        if model.grain:
            yield _grain_result(model, passed=True, duplicates=0, examples=[])

    return _build


GRAIN_CHECK = "grain"


def _grain_check_spec(model: Model) -> AssetCheckSpec:
    return AssetCheckSpec(
        GRAIN_CHECK,
        asset=model_key(model),
        description=(
            f"One row per ({', '.join(model.grain)}), the grain the model declares; audited on the "
            "built table before it replaces the previous one (a violation fails the build)."
        ),
    )


def _grain_result(model: Model, *, passed: bool, duplicates: int, examples: list[str]) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=GRAIN_CHECK,
        asset_key=model_key(model),
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "grain": ", ".join(model.grain),
            "duplicate_keys": duplicates,
            "examples": MetadataValue.md(markdown_table(("key",), [(e,) for e in examples])) if examples else "none",
        },
    )


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
        wh = warehouse.migrated_warehouse()
        as_of = resolve_run_plan(context, wh).as_of
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
            metadata = {"rows": counts[model.name], "as_of": as_of.isoformat()}
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

    def cell(value, tier):
        return None if value is None else f"{value} ({tier})" if tier else f"{value}"

    return markdown_table(
        ("group", "deploys (30d)", "deploys/day", "lead time h", "CFR %", "restore min", "recovery min", "rework %"),
        [
            (r[0], r[1], cell(r[2], r[3]), cell(r[4], r[5]), cell(r[6], r[7]), cell(r[8], r[9]),
             cell(r[10], r[11]), cell(r[12], None))
            for r in rows
        ],
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
