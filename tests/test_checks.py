"""Each asset check passes on healthy data and fails, with the deliberate severity and
metadata a person can act on, on data built to break it (real Postgres, hand-built
records through the real loader and model build)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from dagster import AssetCheckSeverity, MarkdownMetadataValue

from dora_pipeline.defs.checks import check_result
from dora_pipeline.quality.checks import (
    Outcome,
    Severity,
    freshness,
    lead_time_coverage,
    quarantine_growth,
    silent_crash,
    unknown_components,
    windows_complete,
)
from dora_pipeline.records import Deployment, Quarantined
from dora_pipeline.text import Markdown
from dora_pipeline.warehouse.loader import load_partition

from builders import at, build, component, deploy, group, load, pr, ref, sha

TODAY = date(2025, 3, 31)  # a Monday
CATALOG = [group("org"), group("team-a", "org"), component("api", "team-a"), component("web", "team-a")]


def _land(warehouse, day: date, records, source: str = "vendor"):
    with warehouse.connection() as conn:
        load_partition(conn, source, day, records, now=datetime(2025, 6, 1, tzinfo=UTC))


def _deploys(day: date, count: int) -> list[Deployment]:
    when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return [
        Deployment("vendor", f"{day}-{i}", "entity_ref", ref("api"), "production", when + timedelta(minutes=i))
        for i in range(count)
    ]


def _history(warehouse, rows_on, days: int = 29):
    """One partition per day for the ``days`` days before TODAY; ``rows_on(day)`` deployments each."""
    for n in range(days, 0, -1):
        day = TODAY - timedelta(days=n)
        _land(warehouse, day, _deploys(day, rows_on(day)))


def _markdown(result, key: str) -> str:
    return result.metadata[key]


# ---------------------------------------------------------------- silent crash


def test_silent_crash_passes_while_the_latest_day_delivers(warehouse, conn):
    _history(warehouse, lambda day: 4)
    result = silent_crash(conn, "vendor", TODAY)
    assert result.passed and result.severity == Severity.ERROR
    assert result.metadata["rows_latest_partition"] == 4


def test_silent_crash_fails_when_the_latest_day_loads_nothing(warehouse, conn):
    _history(warehouse, lambda day: 0 if day == TODAY - timedelta(days=1) else 4)
    result = silent_crash(conn, "vendor", TODAY)
    assert not result.passed and result.severity == Severity.ERROR
    assert result.metadata["latest_partition"] == "2025-03-30"
    assert result.metadata["rows_latest_partition"] == 0
    assert set(result.metadata["same_weekday_rows"].values()) == {4}
    action = _markdown(result, "action")
    assert "--select dora_raw/vendor --partition 2025-03-30" in action
    assert "credentials" in action


def test_silent_crash_knows_quiet_weekdays_and_today_is_not_complete(warehouse, conn):
    # Nothing on Sundays, ever: the latest day (Sunday 30 March) is empty as usual.
    _history(warehouse, lambda day: 0 if day.weekday() == 6 else 4)
    assert silent_crash(conn, "vendor", TODAY).passed
    # Today's partition is still filling: an empty one is not judged.
    _land(warehouse, TODAY, [])
    _history(warehouse, lambda day: 4)
    assert silent_crash(conn, "vendor", TODAY).passed


def test_silent_crash_needs_history_to_call_a_crash(warehouse, conn):
    _history(warehouse, lambda day: 0 if day == TODAY - timedelta(days=1) else 4, days=6)
    result = silent_crash(conn, "vendor", TODAY)
    assert result.passed and "not enough history" in result.description


# ---------------------------------------------------------------- freshness


def test_freshness_passes_after_a_recent_extract_and_warns_when_old(warehouse, conn):
    _land(warehouse, TODAY - timedelta(days=1), _deploys(TODAY, 1))
    now = datetime.now(UTC)
    fresh = freshness(conn, "vendor", None, now)
    assert fresh.passed and fresh.severity == Severity.WARN

    stale = freshness(conn, "vendor", None, now + timedelta(hours=31))
    assert not stale.passed and stale.severity == Severity.WARN
    assert stale.metadata["age_hours"] > 30
    assert "nightly_refresh" in _markdown(stale, "action")

    retired = freshness(conn, "vendor", "VENDOR_TOKEN is not set", now + timedelta(hours=31))
    assert not retired.passed and "no longer configured" in _markdown(retired, "action")


def test_freshness_of_a_configured_source_never_extracted(conn):
    never = freshness(conn, "vendor", None, datetime.now(UTC))
    assert not never.passed and "backfill" in _markdown(never, "action")
    assert freshness(conn, "vendor", "VENDOR_TOKEN is not set", datetime.now(UTC)).passed


# ---------------------------------------------------------------- quarantine growth


def _bad(day: date, count: int) -> list:
    return [Quarantined("vendor", "deployments", f"vendor:{day}-bad{i}", "environment: is missing", {"i": i})
            for i in range(count)]


def test_quarantine_growth_passes_at_the_usual_rate(warehouse, conn):
    for n in range(35, 0, -1):
        day = TODAY - timedelta(days=n)
        _land(warehouse, day, _deploys(day, 2) + _bad(day, 2))
    result = quarantine_growth(conn, "vendor", TODAY)
    assert result.passed and result.severity == Severity.WARN
    assert result.metadata["quarantined_last_7_days"] == 14


def test_quarantine_growth_warns_with_the_reasons(warehouse, conn):
    for n in range(35, 0, -1):
        day = TODAY - timedelta(days=n)
        _land(warehouse, day, _deploys(day, 2) + _bad(day, 6 if n <= 7 else 1))
    result = quarantine_growth(conn, "vendor", TODAY)
    assert not result.passed and result.severity == Severity.WARN
    assert result.metadata["per_day_recent"] == 6.0
    assert result.metadata["per_day_before"] == 1.0
    assert "| environment | 42 | environment: is missing |" in _markdown(result, "reasons")
    assert "from dora_raw.quarantine where source = 'vendor'" in _markdown(result, "action")


# ---------------------------------------------------------------- lead-time coverage


def _changes(warehouse, linked_deploys: int, unlinked_deploys: int):
    records = list(CATALOG)
    for i in range(linked_deploys):
        records.append(pr("api", 100 + i, at(10 + i, 8), at(10 + i, 10), merge_sha=sha(100 + i)))
        records.append(deploy("api", at(10 + i, 12), sha=sha(100 + i)))
    # Redeploys of the same commit before any PR merged: they ship nothing.
    records += [deploy("api", at(2, h)) for h in range(unlinked_deploys)]
    load(warehouse, records)
    build(warehouse)


def test_lead_time_coverage_passes_when_deploys_ship_prs(warehouse, conn):
    _changes(warehouse, linked_deploys=4, unlinked_deploys=1)
    result = lead_time_coverage(conn)
    assert result.passed and result.severity == Severity.WARN
    assert result.metadata["coverage_pct"] == 80.0


def test_lead_time_coverage_below_threshold_warns_with_the_squash_merge_hint(warehouse, conn):
    _changes(warehouse, linked_deploys=1, unlinked_deploys=4)
    result = lead_time_coverage(conn)
    assert not result.passed and result.severity == Severity.WARN
    assert result.metadata["coverage_pct"] == 20.0
    assert result.metadata["deployments_without_commit_sha"] == 4
    assert "squash" in _markdown(result, "hint") and "head SHA" in _markdown(result, "hint")
    assert f"| {ref('api')} | 5 | 1 | 4 | 20.0 |" in _markdown(result, "lowest_components")


# ---------------------------------------------------------------- unknown components


def test_unknown_components_passes_when_the_catalog_knows_every_service(warehouse, conn):
    load(warehouse, [*CATALOG, deploy("api", at(20)), deploy("web", at(21))])
    build(warehouse)
    result = unknown_components(conn)
    assert result.passed and result.severity == Severity.WARN


def test_unknown_components_warns_naming_the_annotation_to_add(warehouse, conn):
    ghost = Deployment("test", "g1", "github_repo", "acme/ghost", "production", at(20))
    load(warehouse, [*CATALOG, deploy("api", at(20)), ghost])
    build(warehouse)
    result = unknown_components(conn)
    assert not result.passed and result.severity == Severity.WARN
    assert result.metadata["unknown_components"] == 1
    assert result.metadata["deployments"] == 1
    table = _markdown(result, "components")
    assert "component:default/ghost" in table and "`github.com/project-slug: acme/ghost`" in table


# ---------------------------------------------------------------- published tables


@pytest.mark.parametrize(("table", "key"), [("service_metrics", "entity_ref"), ("team_metrics", "group_ref")])
def test_windows_complete_passes_on_a_fresh_build_and_fails_on_a_missing_window(warehouse, conn, table, key):
    load(warehouse, [*CATALOG, deploy("api", at(20)), deploy("web", at(21))])
    build(warehouse)
    result = windows_complete(conn, table, key)
    assert result.passed and result.severity == Severity.ERROR
    assert result.metadata["entities_with_wrong_windows"] == 0

    # What a model bug that drops a window would publish.
    victim = conn.execute(f"select min({key}) from dora_metrics.{table}").fetchone()[0]
    conn.execute(f"delete from dora_metrics.{table} where {key} = %s and window_days = 7", (victim,))
    conn.commit()
    broken = windows_complete(conn, table, key)
    assert not broken.passed and broken.severity == Severity.ERROR
    assert f"| {victim} | \\[30, 90\\] |" in _markdown(broken, "examples")


def test_windows_complete_fails_on_an_empty_published_table(warehouse, conn):
    build(warehouse)  # nothing extracted: the published tables exist and are empty
    result = windows_complete(conn, "service_metrics", "entity_ref")
    assert not result.passed and result.severity == Severity.ERROR
    assert "is empty" in result.description


# ---------------------------------------------------------------- the Dagster wrapper


def test_an_outcome_becomes_dagsters_check_result_with_markdown_rendered_as_markdown():
    outcome = Outcome(
        passed=False, severity=Severity.WARN, description="late",
        metadata={"age_hours": 31.5, "action": Markdown("**do** this")},
    )
    result = check_result(outcome)
    assert not result.passed and result.severity == AssetCheckSeverity.WARN
    assert result.description == "late"
    assert result.metadata["age_hours"].value == 31.5
    assert isinstance(result.metadata["action"], MarkdownMetadataValue)
    assert result.metadata["action"].value == "**do** this"
