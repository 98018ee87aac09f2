"""The run plan (docs/operations.md, "Run plan"): pure logic, no server.

Every front door computes the same plan: ``dora-pipeline run`` and a backfill of a range
(``RunPlan.for_range``), a nightly tick (``RunPlan.for_tick``), a rebuild after
extract-only runs (``RunPlan.for_latest``); Dagster carries it as run tags."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from dora_pipeline.config import Settings
from dora_pipeline.defs.assets import AS_OF_TAG, daily_partitions, plan_from_tags, run_plan_tags
from dora_pipeline.pipeline import OPEN_INCIDENT_LOOKBACK_DAYS, RunPlan, midnight_after
from dora_pipeline.sources import get_source

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
FIRST = date(2025, 1, 1)
TICK = datetime(2025, 3, 10, 3, 0, tzinfo=UTC)  # the 03:00 UTC tick of 10 March


def test_a_range_ends_its_windows_at_midnight_after_its_last_day():
    plan = RunPlan.for_range(date(2025, 2, 24), date(2025, 3, 9))
    assert plan.as_of == datetime(2025, 3, 10, tzinfo=UTC)
    assert plan.days[0] == date(2025, 2, 24) and plan.days[-1] == date(2025, 3, 9)
    assert len(plan.days) == 14
    # An explicit as_of (`run --as-of`) wins; a reversed range is refused.
    explicit = datetime(2025, 3, 9, 12, tzinfo=UTC)
    assert RunPlan.for_range(date(2025, 3, 1), date(2025, 3, 9), explicit).as_of == explicit
    with pytest.raises(ValueError, match="before"):
        RunPlan.for_range(date(2025, 3, 9), date(2025, 3, 1))
    # Month and year ends roll over.
    assert midnight_after(date(2024, 12, 31)) == datetime(2025, 1, 1, tzinfo=UTC)
    assert midnight_after(date(2024, 2, 28)) == datetime(2024, 2, 29, tzinfo=UTC)


def test_a_nightly_tick_covers_yesterday_and_the_look_back_as_of_its_own_day():
    plan = RunPlan.for_tick(TICK, 3, FIRST)
    assert (plan.start, plan.end) == (date(2025, 3, 6), date(2025, 3, 9))
    assert plan.as_of == datetime(2025, 3, 10, tzinfo=UTC)
    # The same as a backfill of the same days: one plan, whichever door.
    assert plan == RunPlan.for_range(date(2025, 3, 6), date(2025, 3, 9))
    assert (RunPlan.for_tick(TICK, 0, FIRST).start, RunPlan.for_tick(TICK, 0, FIRST).end) == (
        date(2025, 3, 9),
        date(2025, 3, 9),
    )
    # A tick late in its evening elsewhere is still the UTC day's tick.
    new_york = datetime.fromisoformat("2025-03-09T22:00:00-05:00")
    assert RunPlan.for_tick(new_york, 0, FIRST).as_of == datetime(2025, 3, 10, tzinfo=UTC)
    # Never before the first partition; nothing at all on its first day.
    early = RunPlan.for_tick(datetime(2025, 1, 3, 3, tzinfo=UTC), 3, FIRST)
    assert (early.start, early.end) == (FIRST, date(2025, 1, 2))
    assert RunPlan.for_tick(datetime(2025, 1, 1, 3, tzinfo=UTC), 3, FIRST) is None


def test_a_rebuild_takes_the_as_of_its_latest_partition_implies():
    plan = RunPlan.for_latest(date(2025, 3, 9))
    assert plan.as_of == datetime(2025, 3, 10, tzinfo=UTC)
    assert plan.days == [date(2025, 3, 9)]


def test_incident_sources_revisit_earlier_days_with_open_incidents_within_the_look_back():
    plan = RunPlan.for_range(date(2025, 3, 8), date(2025, 3, 9))
    too_old = plan.end - timedelta(days=OPEN_INCIDENT_LOOKBACK_DAYS + 1)
    oldest = plan.end - timedelta(days=OPEN_INCIDENT_LOOKBACK_DAYS)
    open_days = [
        date(2025, 3, 2),
        too_old,
        oldest,
        date(2025, 3, 8),
        date(2025, 3, 2),
        date(2025, 3, 12),
    ]
    # Before the range only (the range is extracted anyway), once each, in order.
    assert plan.revisit_days(open_days) == [oldest, date(2025, 3, 2)]
    pagerduty, synthetic, backstage = (
        get_source(n) for n in ("pagerduty", "synthetic", "backstage")
    )
    assert pagerduty.revisit_open_incidents and get_source("opsgenie").revisit_open_incidents
    assert plan.source_days(pagerduty, open_days) == [
        oldest,
        date(2025, 3, 2),
        date(2025, 3, 8),
        date(2025, 3, 9),
    ]
    # A source without incidents ignores them; the catalog is read once, as of the last day.
    assert plan.source_days(synthetic, open_days) == [date(2025, 3, 8), date(2025, 3, 9)]
    assert plan.source_days(backstage, open_days) == [date(2025, 3, 9)]


def test_the_plan_travels_as_run_tags():
    plan = RunPlan.for_tick(TICK, 3, FIRST)
    tags = run_plan_tags(plan)
    assert tags == {
        RANGE_START: "2025-03-06",
        RANGE_END: "2025-03-09",
        AS_OF_TAG: "2025-03-10T00:00:00+00:00",
    }
    assert plan_from_tags(tags) == plan
    # A range alone (a single-run backfill from the UI or `dagster asset materialize
    # --partition-range`) and one partition imply their as_of.
    assert plan_from_tags({RANGE_START: "2025-03-01", RANGE_END: "2025-03-09"}).as_of == datetime(
        2025, 3, 10, tzinfo=UTC
    )
    one = plan_from_tags({"dagster/partition": "2025-03-04"})
    assert (one.start, one.end, one.as_of) == (
        date(2025, 3, 4),
        date(2025, 3, 4),
        datetime(2025, 3, 5, tzinfo=UTC),
    )
    # An as_of given by hand in the launchpad: a date means its midnight UTC.
    assert plan_from_tags({AS_OF_TAG: "2025-03-10"}).as_of == datetime(2025, 3, 10, tzinfo=UTC)
    # Tags that state no plan: the run derives it (backfill, latest extracted partition).
    assert plan_from_tags({"dagster/backfill": "abc"}) is None
    assert plan_from_tags({}) is None


def test_a_malformed_plan_tag_is_a_clear_error():
    from dagster import Failure

    with pytest.raises(Failure, match="dora/as_of: 'yesterday' is not an ISO date"):
        plan_from_tags({AS_OF_TAG: "yesterday"})
    with pytest.raises(Failure, match="'2025-3-1' is not a daily partition key"):
        plan_from_tags({RANGE_START: "2025-3-1", RANGE_END: "2025-03-09"})


def test_daily_partitions_end_at_the_last_complete_utc_day():
    partitions = daily_partitions(Settings.from_env({"DORA_PARTITIONS_START": "2025-03-01"}))
    for now in (
        "2025-03-10T00:00:00+00:00",
        "2025-03-10T12:00:00+00:00",
        "2025-03-10T23:59:59+00:00",
    ):
        keys = partitions.get_partition_keys(current_time=datetime.fromisoformat(now))
        assert keys[0] == "2025-03-01" and keys[-1] == "2025-03-09", now
