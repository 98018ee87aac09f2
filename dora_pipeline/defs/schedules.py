"""Schedules: the nightly refresh, and the hourly freshness checks.

The nightly run is one run with the run plan of its tick (``RunPlan.for_tick``): it
extracts yesterday's partition plus ``DORA_LOOKBACK_DAYS`` days before it (PRs, incidents
and survey rows change after the fact; re-extracting is idempotent) and, for incident
sources, earlier days still holding an open incident, for every configured source, then
rebuilds every model as of the tick's day (00:00 UTC) and publishes, in dependency order
inside the run. The plan travels as run tags (``assets.run_plan_tags``). One run rather than one per partition: the models must
start after the last extract, and a run that fails leaves the previous published tables
in place. Its run key is the date it covers, so a tick evaluated twice launches once.
"""

# No `from __future__ import annotations`: Dagster inspects the resource annotations at runtime.

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from dagster import (
    AssetKey,
    DefaultScheduleStatus,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from ..pipeline import RunPlan
from ..sources import Source
from .assets import run_plan_tags
from .resources import WarehouseResource

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

NIGHTLY_CRON = "0 3 * * *"  # 03:00 UTC: yesterday (UTC) is complete at every source by then
FRESHNESS_CRON = "17 * * * *"
LOOKBACK_TAG = "dora/lookback_days"


def nightly_schedule(
    job: "JobDefinition | UnresolvedAssetJobDefinition",
    extract_keys: Mapping[Source, AssetKey],
    rebuild_keys: Sequence[AssetKey],
) -> ScheduleDefinition:
    """The nightly run of ``job``: the configured sources' extract assets for the
    look-back range, then ``rebuild_keys`` (every model and the publish)."""

    @schedule(
        name="nightly_refresh",
        job=job,
        cron_schedule=NIGHTLY_CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=(
            "Every night: extract yesterday and the DORA_LOOKBACK_DAYS days before it (default 3), "
            "plus earlier days still holding an open incident, for every configured source, then "
            "rebuild the models as of today 00:00 UTC (run tag dora/as_of) and publish dora_metrics."
        ),
    )
    def nightly_refresh(context: ScheduleEvaluationContext, warehouse: WarehouseResource):
        settings = warehouse.settings()
        scheduled = context.scheduled_execution_time or datetime.now(UTC)
        first_day = date.fromisoformat(settings.partitions_start)
        plan = RunPlan.for_tick(scheduled, settings.lookback_days, first_day)
        if plan is None:
            return SkipReason(f"nothing to extract before DORA_PARTITIONS_START {settings.partitions_start}")
        configured = [key for source, key in extract_keys.items() if source.skip_reason(settings) is None]
        return RunRequest(
            run_key=f"nightly-{plan.end.isoformat()}",
            asset_selection=[*configured, *rebuild_keys],
            tags={**run_plan_tags(plan), LOOKBACK_TAG: str(settings.lookback_days)},
        )

    return nightly_refresh


def freshness_schedule(job: "JobDefinition | UnresolvedAssetJobDefinition") -> ScheduleDefinition:
    """Every hour, only the sources' freshness checks: a check that only ran after a
    successful extract would never see a source that stopped being extracted."""
    return ScheduleDefinition(
        name="source_freshness_hourly",
        job=job,
        cron_schedule=FRESHNESS_CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Every hour: evaluate each source's freshness check (no extract).",
    )
