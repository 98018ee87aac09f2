"""Every rule of DESIGN §7 on small hand-built event sets with hand-computed values.

AS_OF is 2025-03-31T00:00Z, so the 30-day window is [2025-03-01, 2025-03-31).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from builders import (
    AS_OF,
    at,
    build,
    component,
    deploy,
    group,
    incident,
    load,
    pr,
    ref,
    service,
    sha,
    team,
)

D = Decimal


@pytest.fixture
def org(warehouse):
    load(warehouse, [
        group("eng"), group("team-a", "eng"), group("team-b", "eng"),
        component("api", "team-a"), component("web", "team-a"), component("db", "team-b"),
    ])
    return warehouse


def test_failed_and_non_production_deploys_are_not_deployments(org):
    load(org, [
        deploy("api", at(2), sha(1)),
        deploy("api", at(3), sha(2), failed=True),
        deploy("api", at(4), sha(3), env="staging"),
        deploy("api", at(5), sha(4), env="Production"),  # matches (?i)^(prod|production)$
        deploy("api", at(6), sha(5), env="production-eu"),  # anchored: not production
    ])
    build(org)
    m = service(org, "api")
    assert m["deployments"] == 2
    assert m["failed_attempts"] == 1
    assert m["deploy_days"] == 2
    assert m["deploys_per_day"] == D("0.0667")
    assert m["deployment_frequency_tier"] == "medium"  # 2/30 >= 1/30


def test_deploy_days_count_distinct_utc_dates(org):
    load(org, [deploy("api", at(2, 1)), deploy("api", at(2, 23)), deploy("api", at(3, 0.5))])
    build(org)
    assert service(org, "api")["deploy_days"] == 2


def test_lead_time_exact_sha_squash_head_and_next_deploy_fallback(org):
    load(org, [
        deploy("api", at(10, 12), sha(100)),
        deploy("api", at(12, 12), sha(200)),
        deploy("api", at(14, 12), sha(300)),
        # exact merge-commit match, although an earlier deploy followed the merge
        pr("api", 1, first_commit=at(8, 12), merged=at(9, 12), merge_sha=sha(200)),
        # squash merge: the deploy carries the head SHA
        pr("api", 2, first_commit=at(9, 0), merged=at(9, 6), merge_sha=sha(901), head_sha=sha(300)),
        # no SHA match: the earliest deploy at or after the merge (at(12,12))
        pr("api", 3, first_commit=at(11, 0), merged=at(11, 12), merge_sha=sha(902)),
        # merged after the last deploy: never deployed, not measured
        pr("api", 4, first_commit=at(14, 13), merged=at(15, 0), merge_sha=sha(903)),
    ])
    build(org)
    m = service(org, "api")
    # lead times: PR1 = at(12,12) - at(8,12) = 96 h; PR2 = at(14,12) - at(9,0) = 132 h;
    # PR3 = at(12,12) - at(11,0) = 36 h  -> median 96
    assert m["lead_time_changes"] == 3
    assert m["median_lead_time_hours"] == D("96.00")
    assert m["lead_time_tier"] == "high"
    # deploys shipping >= 1 PR: at(12,12) (PR1, PR3) and at(14,12) (PR2); at(10,12) ships none
    assert m["lead_time_coverage_pct"] == D("66.67")


def test_lead_time_median_interpolates_and_pr_counts_in_window_of_its_deploy(org):
    load(org, [
        deploy("api", at(1, 2), sha(1)),  # inside the window (starts 2025-03-01T00:00)
        deploy("api", at(28, 0, month=2), sha(2)),  # before the window
        pr("api", 1, first_commit=at(1, 0), merged=at(1, 1), merge_sha=sha(1)),  # 2 h
        pr("api", 2, first_commit=at(1, 0, month=2) - timedelta(hours=1), merged=at(1, 1), merge_sha=sha(1)),
        pr("api", 3, first_commit=at(27, 0, month=2), merged=at(27, 1, month=2), merge_sha=sha(2)),
    ])
    build(org)
    m = service(org, "api")
    # PR1: 2 h; PR2: from 2025-02-01T00:00 - 1h to 2025-03-01T02:00 = 28 days + 3 h = 675 h
    assert m["lead_time_changes"] == 2
    assert m["median_lead_time_hours"] == D("338.50")  # (2 + 675) / 2
    assert service(org, "api", 90)["lead_time_changes"] == 3


def test_window_is_half_open(org):
    load(org, [
        deploy("api", AS_OF - timedelta(days=30)),  # window start: in
        deploy("api", AS_OF),  # window end: out
        deploy("api", AS_OF - timedelta(days=30, microseconds=1)),  # just before the start: out
    ])
    build(org)
    assert service(org, "api")["deployments"] == 1
    assert service(org, "api", 90)["deployments"] == 2


def test_incident_blamed_only_on_latest_deploy_within_window_hours(org):
    load(org, [
        deploy("api", at(10, 0), ext="early"),
        deploy("api", at(10, 6), ext="latest"),
        incident(["api"], opened=at(10, 7), resolved=at(10, 8)),
    ])
    build(org)
    m = service(org, "api")
    assert (m["deployments"], m["failed_deployments"]) == (2, 1)
    assert m["change_failure_rate_pct"] == D("50.00")
    with org.connection() as conn:
        blamed = conn.execute("select deployment_id from dora_intermediate.int_incidents_blamed").fetchall()
    assert blamed == [("test:latest",)]


@pytest.mark.parametrize(
    ("gap", "blamed"),
    [(timedelta(hours=24), True), (timedelta(hours=24, seconds=1), False), (timedelta(0), True)],
)
def test_incident_window_edge(org, gap, blamed):
    load(org, [deploy("api", at(10, 0)), incident(["api"], opened=at(10, 0) + gap, resolved=at(12))])
    build(org)
    assert service(org, "api")["failed_deployments"] == (1 if blamed else 0)


def test_incident_window_hours_is_configurable(org):
    from dora_pipeline.warehouse import Warehouse

    from conftest import settings_with

    load(org, [deploy("api", at(10, 0)), incident(["api"], opened=at(11, 1), resolved=at(12))])
    wide = Warehouse(settings_with(org.settings, DORA_INCIDENT_WINDOW_HOURS="48"))
    build(wide)
    assert service(wide, "api")["failed_deployments"] == 1
    build(org)
    assert service(org, "api")["failed_deployments"] == 0


def test_caused_by_change_false_is_excluded_and_unknown_counts(org):
    load(org, [
        deploy("api", at(5)), incident(["api"], opened=at(5, 13), resolved=at(5, 14), caused=False),
        deploy("web", at(5)), incident(["web"], opened=at(5, 13), resolved=at(5, 14), caused=None),
    ])
    build(org)
    assert service(org, "api")["failed_deployments"] == 0
    assert service(org, "web")["failed_deployments"] == 1
    # time to restore counts every resolved incident, caused by a change or not
    assert service(org, "api")["median_time_to_restore_minutes"] == D("60.00")


def test_failure_belongs_to_the_deployments_window(org):
    # deploy just before the 7-day window, incident inside it
    load(org, [
        deploy("api", AS_OF - timedelta(days=7, hours=2)),
        incident(["api"], opened=AS_OF - timedelta(days=7, hours=-1), resolved=AS_OF - timedelta(days=6)),
    ])
    build(org)
    week = service(org, "api", 7)
    assert (week["deployments"], week["failed_deployments"], week["incidents"]) == (0, 0, 1)
    month = service(org, "api", 30)
    assert (month["deployments"], month["failed_deployments"]) == (1, 1)


def test_time_to_restore_median_over_resolved_incidents_opened_in_window(org):
    load(org, [
        incident(["api"], opened=at(3), resolved=at(3) + timedelta(minutes=30)),
        incident(["api"], opened=at(4), resolved=at(4) + timedelta(minutes=90)),
        incident(["api"], opened=at(5), resolved=None),  # open: counted, not in the median
        incident(["api"], opened=at(20, month=2), resolved=at(3)),  # opened before the window
    ])
    build(org)
    m = service(org, "api")
    assert m["incidents"] == 3
    assert m["median_time_to_restore_minutes"] == D("60.00")
    assert m["time_to_restore_tier"] == "high"  # 60 is not < 60


def test_incident_affecting_two_components_counts_for_each_and_once_for_their_team(org):
    load(org, [
        deploy("api", at(7, 0)), deploy("web", at(7, 1)),
        incident(["api", "web"], opened=at(7, 2), resolved=at(7, 3)),
    ])
    build(org)
    assert service(org, "api")["failed_deployments"] == 1
    assert service(org, "web")["failed_deployments"] == 1
    t = team(org, "team-a")
    assert (t["deployments"], t["failed_deployments"], t["incidents"]) == (2, 2, 1)


def test_team_pools_events_and_parent_includes_children(org):
    load(org, [
        deploy("api", at(2), sha(1)), deploy("web", at(3), sha(2)), deploy("db", at(4), sha(3)),
        pr("api", 1, first_commit=at(1, 12), merged=at(1, 13), merge_sha=sha(1)),  # 12 h... +
        pr("api", 2, first_commit=at(1, 0), merged=at(1, 13), merge_sha=sha(1)),  # 36 h
        pr("web", 1, first_commit=at(2, 12), merged=at(2, 13), merge_sha=sha(2)),  # 24 h
        pr("db", 1, first_commit=at(3, 0), merged=at(3, 1), merge_sha=sha(3)),  # 36 h
    ])
    build(org)
    # service medians: api (24, 36) -> 30; web 24. Pooled team-a: 24, 24, 36 -> 24 (not avg 27).
    assert service(org, "api")["median_lead_time_hours"] == D("30.00")
    a = team(org, "team-a")
    assert a["median_lead_time_hours"] == D("24.00")
    assert a["deployments"] == 2
    eng = team(org, "eng")
    assert eng["deployments"] == 3
    assert eng["lead_time_changes"] == 4
    assert eng["median_lead_time_hours"] == D("30.00")  # 24, 24, 36, 36


def test_pr_numbers_repeat_across_repositories(org):
    load(org, [
        deploy("api", at(2), sha(1)), deploy("web", at(2), sha(2)),
        pr("api", 7, first_commit=at(1), merged=at(1, 13), merge_sha=sha(1)),
        pr("web", 7, first_commit=at(1), merged=at(1, 13), merge_sha=sha(2)),
    ])
    build(org)
    assert team(org, "team-a")["lead_time_changes"] == 2


def test_repository_mapped_to_two_components_counts_once_per_team(warehouse):
    load(warehouse, [
        group("team-a"),
        component("api", "team-a", repo="acme/mono"), component("worker", "team-a", repo="acme/mono"),
        deploy("api", at(2), sha(1)),
        pr("api", 1, first_commit=at(1), merged=at(1, 12), merge_sha=sha(1), repo="acme/mono"),
    ])
    build(warehouse)
    assert service(warehouse, "api")["lead_time_changes"] == 1
    # worker has the PR (same repository) but no deployment shipped it
    assert service(warehouse, "worker")["lead_time_changes"] == 0
    assert team(warehouse, "team-a")["lead_time_changes"] == 1


def test_frequency_tier_null_only_without_any_production_deployment(org):
    load(org, [deploy("api", at(1, month=1)), deploy("web", at(2), env="staging")])
    build(org)
    assert service(org, "api")["deployments"] == 0
    assert service(org, "api")["deployment_frequency_tier"] == "low"
    assert service(org, "web")["deployment_frequency_tier"] is None
    assert service(org, "db")["deployment_frequency_tier"] is None


def test_unmapped_events_get_a_fallback_component(org):
    from builders import Deployment

    load(org, [Deployment("test", "x1", "github_repo", "acme/Legacy-Thing", "production", at(3))])
    build(org)
    m = service(org, "legacy-thing")
    assert m["owner_ref"] is None and m["deployments"] == 1
    with org.connection() as conn:
        dq = conn.execute(
            "select value from dora_metrics.data_quality where check_name = 'unmapped' and source = 'test'"
        ).fetchone()
    assert dq == (1,)


def test_every_component_and_group_has_three_windows(org):
    load(org, [deploy("api", at(3))])
    build(org)
    with org.connection() as conn:
        windows = conn.execute(
            "select entity_ref, array_agg(window_days order by window_days) from dora_metrics.service_metrics group by 1"
        ).fetchall()
        groups = conn.execute("select count(distinct group_ref), count(*) from dora_metrics.team_metrics").fetchone()
    assert {w[0] for w in windows} == {ref("api"), ref("web"), ref("db")}
    assert all(w[1] == [7, 30, 90] for w in windows)
    assert groups == (3, 9)


def test_weekly_rows_from_first_event_week(org):
    load(org, [
        deploy("api", at(3, 1)),  # Monday 2025-03-03
        deploy("api", at(9, 23)),  # Sunday of the same ISO week
        deploy("api", at(10, 0)),  # next Monday
    ])
    build(org)
    with org.connection() as conn:
        weeks = conn.execute(
            "select week_start::text, deployments from dora_metrics.service_metrics_weekly "
            "where entity_ref = %s order by week_start",
            (ref("api"),),
        ).fetchall()
    assert weeks == [("2025-03-03", 2), ("2025-03-10", 1), ("2025-03-17", 0), ("2025-03-24", 0)]


# Tier boundaries: (metric column, events builder, expected tier)
def _deploys(n):
    return [deploy("api", at(1 + (i % 29), (i // 29) * 0.01)) for i in range(n)]


@pytest.mark.parametrize(("count", "tier"), [(30, "elite"), (29, "high"), (5, "high"), (4, "medium"), (1, "medium")])
def test_deployment_frequency_tier_boundaries(org, count, tier):
    # 30-day window: elite >= 1/day (30), high >= 1/7 (4.29 -> 5), medium >= 1/30 (1)
    load(org, _deploys(count))
    build(org)
    assert service(org, "api")["deployment_frequency_tier"] == tier


@pytest.mark.parametrize(
    ("hours", "tier"),
    [(23.99, "elite"), (24, "high"), (167.99, "high"), (168, "medium"), (719.99, "medium"), (720, "low")],
)
def test_lead_time_tier_boundaries(org, hours, tier):
    deployed = at(30)
    load(org, [deploy("api", deployed, sha(1)),
               pr("api", 1, first_commit=deployed - timedelta(hours=hours), merged=deployed - timedelta(minutes=1),
                  merge_sha=sha(1))])
    build(org)
    assert service(org, "api")["lead_time_tier"] == tier


@pytest.mark.parametrize(("failed", "tier"), [(1, "elite"), (2, "high"), (3, "medium"), (4, "low")])
def test_change_failure_tier_boundaries(org, failed, tier):
    # 20 deployments: 1 -> 5 % elite, 2 -> 10 % high, 3 -> 15 % medium, 4 -> 20 % low
    events = [deploy("api", at(1 + i)) for i in range(20)]
    events += [incident(["api"], opened=at(1 + i, 13), resolved=at(1 + i, 14)) for i in range(failed)]
    load(org, events)
    build(org)
    m = service(org, "api")
    assert m["change_failure_rate_pct"] == D(5 * failed)
    assert m["change_failure_tier"] == tier


@pytest.mark.parametrize(
    ("minutes", "tier"), [(59, "elite"), (60, "high"), (1439, "high"), (1440, "medium"), (10079, "medium"), (10080, "low")]
)
def test_time_to_restore_tier_boundaries(org, minutes, tier):
    load(org, [incident(["api"], opened=at(2), resolved=at(2) + timedelta(minutes=minutes), caused=False)])
    build(org)
    assert service(org, "api")["time_to_restore_tier"] == tier


def test_benchmarks_table_lists_the_bands(org):
    build(org)
    with org.connection() as conn:
        bands = dict(conn.execute(
            "select metric || '/' || tier, bounds from dora_metrics.benchmarks"
        ).fetchall())
    assert bands["deploys_per_day/elite"] == "[1.0000, inf)"
    assert bands["change_failure_rate_pct/high"] == "(5.0000, 10.0000]"
    assert bands["median_lead_time_hours/elite"] == "[0.0000, 24.0000)"


def test_sha_match_before_the_change_started_is_ignored(org):
    # The same commit reached production (another branch) before this PR's first commit:
    # it cannot have shipped the PR; the next deploy after the merge did.
    load(org, [
        deploy("api", at(2), sha(7)),
        deploy("api", at(6), sha(8)),
        pr("api", 1, first_commit=at(3), merged=at(5), head_sha=sha(7), merge_sha=sha(9)),
    ])
    build(org)
    m = service(org, "api")
    assert m["lead_time_changes"] == 1
    assert m["median_lead_time_hours"] == D("72.00")  # at(6) - at(3)
