"""Schedules: the nightly refresh, and the hourly freshness checks.

The nightly run is one run: it extracts yesterday's partition plus ``DORA_LOOKBACK_DAYS``
days before it (PRs, incidents and survey rows change after the fact; re-extracting is
idempotent) for every configured source, then rebuilds every model and publishes, in
dependency order inside the run. One run rather than one per partition: the models must
start after the last extract, and a run that fails leaves the previous published tables
in place. Its run key is the date it covers, so a tick evaluated twice launches once.
"""

# No `from __future__ import annotations`: Dagster inspects the resource annotations at runtime.

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
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

# The tags `dagster asset materialize --partition-range` and single-run backfills use.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from .resources import WarehouseResource
from .sources import Source

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

NIGHTLY_CRON = "0 3 * * *"  # 03:00 UTC: yesterday (UTC) is complete at every source by then
FRESHNESS_CRON = "17 * * * *"
LOOKBACK_TAG = "dora/lookback_days"


def nightly_days(scheduled: datetime, lookback_days: int, first_day: date) -> tuple[date, date] | None:
    """The partitions a nightly run at ``scheduled`` covers: yesterday (UTC) and the
    ``lookback_days`` before it, never before the first partition. None before that."""
    end = scheduled.astimezone(UTC).date() - timedelta(days=1)
    if end < first_day:
        return None
    return max(end - timedelta(days=lookback_days), first_day), end


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
            "Every night: extract yesterday and the DORA_LOOKBACK_DAYS days before it (default 3) "
            "for every configured source, then rebuild the models and publish dora_metrics."
        ),
    )
    def nightly_refresh(context: ScheduleEvaluationContext, warehouse: WarehouseResource):
        settings = warehouse.settings()
        scheduled = context.scheduled_execution_time or datetime.now(UTC)
        days = nightly_days(scheduled, settings.lookback_days, date.fromisoformat(settings.partitions_start))
        if days is None:
            return SkipReason(f"nothing to extract before DORA_PARTITIONS_START {settings.partitions_start}")
        start, end = days
        configured = [key for source, key in extract_keys.items() if source.skip_reason(settings) is None]
        return RunRequest(
            run_key=f"nightly-{end.isoformat()}",
            asset_selection=[*configured, *rebuild_keys],
            tags={
                ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
                LOOKBACK_TAG: str(settings.lookback_days),
            },
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
