"""Failed deployment recovery time and rework rate (DESIGN §7, DORA 2023/2024) on small
hand-built event sets with hand-computed values.

AS_OF is 2025-03-31T00:00Z, so the 30-day window is [2025-03-01, 2025-03-31).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from dora_pipeline.records import Deployment, DirectChange
from dora_pipeline.warehouse import Warehouse

from builders import (
    at,
    build,
    component,
    deploy,
    group,
    incident,
    load,
    ref,
    service,
    sha,
    team,
)
from conftest import settings_with

D = Decimal
# The improvement-candidate windows of tests/test_improvement_candidates.py: recent =
# [03-21, 03-31), baseline = [03-01, 03-21), 3 deployments at least in each.
RULE_ENV = {
    "DORA_RULE_RECENT_DAYS": "10",
    "DORA_RULE_BASELINE_DAYS": "20",
    "DORA_RULE_MIN_SAMPLE": "3",
}


@pytest.fixture
def org(warehouse):
    load(
        warehouse,
        [
            group("eng"),
            group("team-a", "eng"),
            group("team-b", "eng"),
            component("api", "team-a"),
            component("web", "team-a"),
            component("db", "team-b"),
        ],
    )
    return warehouse


def test_recovery_runs_to_the_latest_resolution_and_waits_for_every_incident(org):
    load(
        org,
        [
            deploy("api", at(10, 12), ext="two-incidents"),
            incident(["api"], opened=at(10, 14), resolved=at(10, 15)),  # 60 min to restore
            incident(["api"], opened=at(10, 20), resolved=at(11, 2)),  # 360 min to restore
            deploy("api", at(15, 12), ext="still-open"),
            incident(["api"], opened=at(15, 13), resolved=at(15, 14)),  # 60 min
            incident(["api"], opened=at(15, 16)),  # never resolved
        ],
    )
    build(org)
    m = service(org, "api")
    assert (m["deployments"], m["failed_deployments"]) == (2, 2)
    # at(11, 2) - at(10, 12) = 14 h; the second deployment is not recovered and is left
    # out of the median (not counted as zero, not as "still running").
    assert m["recovered_deployments"] == 1
    assert m["median_failed_deployment_recovery_minutes"] == D("840.00")
    assert m["failed_deployment_recovery_tier"] == "high"  # < 1440 min
    # time to restore is per incident, opened -> resolved: median of 60, 360, 60 = 60
    assert m["median_time_to_restore_minutes"] == D("60.00")
    assert m["time_to_restore_tier"] == "high"
    # no deployment followed the open incident: nothing is rework
    assert (m["rework_deployments"], m["rework_rate_pct"]) == (0, D("0.00"))


def test_recovery_tier_bands_are_the_time_to_restore_bands(org):
    load(
        org,
        [
            deploy("api", at(3, 12)),
            incident(["api"], opened=at(3, 12), resolved=at(3, 12.5)),  # 30 min
            deploy("web", at(3, 12)),
            incident(["web"], opened=at(3, 13), resolved=at(10, 13)),  # 7 days + 1 h = 10140 min
        ],
    )
    build(org)
    api, web = service(org, "api"), service(org, "web")
    assert (
        api["median_failed_deployment_recovery_minutes"],
        api["failed_deployment_recovery_tier"],
    ) == (D("30.00"), "elite")
    assert (
        web["median_failed_deployment_recovery_minutes"],
        web["failed_deployment_recovery_tier"],
    ) == (D("10140.00"), "low")
    with org.connection() as conn:
        bands = conn.execute(
            "select tier, bounds from dora_metrics.benchmarks"
            " where metric = 'median_failed_deployment_recovery_minutes' order by tier_rank"
        ).fetchall()
    assert bands == [
        ("elite", "[0.0000, 60.0000)"),
        ("high", "[60.0000, 1440.0000)"),
        ("medium", "[1440.0000, 10080.0000)"),
        ("low", "[10080.0000, inf)"),
    ]


def test_a_failure_belongs_to_the_deployments_window_and_week(org):
    load(
        org,
        [
            # 2025-02-28 23:00 is before the 30-day window; its incident opens inside it
            deploy("api", at(28, 23, month=2)),
            incident(["api"], opened=at(1, 1), resolved=at(1, 3)),
        ],
    )
    build(org)
    m30, m90 = service(org, "api"), service(org, "api", 90)
    assert (m30["failed_deployments"], m30["recovered_deployments"]) == (0, 0)
    assert m30["median_failed_deployment_recovery_minutes"] is None
    assert m30["failed_deployment_recovery_tier"] is None
    assert m30["incidents"] == 1  # the incident itself counts where it opened
    assert (m90["recovered_deployments"], m90["median_failed_deployment_recovery_minutes"]) == (
        1,
        D("240.00"),
    )
    with org.connection() as conn:
        weeks = conn.execute(
            "select week_start, failed_deployments, recovered_deployments,"
            " median_failed_deployment_recovery_minutes from dora_metrics.service_metrics_weekly"
            " where entity_ref = %s and failed_deployments > 0",
            (ref("api"),),
        ).fetchall()
    assert weeks == [(date(2025, 2, 24), 1, 1, D("240.00"))]  # the Monday of Friday 2025-02-28


def test_rework_is_a_deploy_while_an_earlier_deploys_incident_is_open(org):
    load(
        org,
        [
            deploy("api", at(5, 12), ext="cause"),
            incident(["api"], opened=at(5, 14), resolved=at(5, 18)),  # blamed on "cause"
            deploy("api", at(5, 16), ext="fix-forward"),  # while it is open: rework
            deploy("api", at(5, 18), ext="at-resolution"),  # resolved >= finished: rework
            deploy("api", at(5, 18.5), ext="after"),  # just after it resolved: not rework
            deploy("db", at(5, 15), ext="other"),  # a component the incident does not affect
            deploy("web", at(5, 15), ext="web-during"),  # another component during it: not rework
        ],
    )
    build(org)
    api = service(org, "api")
    assert (api["deployments"], api["rework_deployments"]) == (4, 2)
    assert api["rework_rate_pct"] == D("50.00")
    web, db = service(org, "web"), service(org, "db")
    assert (web["rework_deployments"], web["rework_rate_pct"]) == (0, D("0.00"))
    assert (db["rework_deployments"], db["rework_rate_pct"]) == (0, D("0.00"))
    with org.connection() as conn:
        rework = conn.execute(
            "select deployment_id from dora_intermediate.int_deployment_outcomes"
            " where is_rework order by finished_at"
        ).fetchall()
    assert rework == [("test:fix-forward",), ("test:at-resolution",)]
    # the team pools its components' deployments: 2 of api's 4 + web's 1
    assert (team(org, "team-a")["rework_deployments"], team(org, "team-a")["rework_rate_pct"]) == (
        2,
        D("40.00"),
    )


def test_an_incident_opened_before_the_deploy_it_would_follow_is_not_rework_of_itself(org):
    load(
        org,
        [
            deploy("api", at(7, 10), ext="first"),
            incident(["api"], opened=at(7, 11)),  # open for good, blamed on "first"
            deploy("api", at(7, 12), ext="second"),  # rework (incident still open)
            incident(["api"], opened=at(7, 13), resolved=at(7, 14)),  # blamed on "second"
            deploy("api", at(7, 15), ext="third"),  # rework: the first incident is still open
        ],
    )
    build(org)
    api = service(org, "api")
    assert (api["deployments"], api["rework_deployments"], api["failed_deployments"]) == (3, 2, 2)
    # "first" is not recovered (its incident is open), "second" recovered after 120 min
    assert (api["recovered_deployments"], api["median_failed_deployment_recovery_minutes"]) == (
        1,
        D("120.00"),
    )


def test_group_pools_components_sharing_an_incident(org):
    load(
        org,
        [
            deploy("api", at(8, 10)),
            deploy("web", at(8, 11)),
            incident(
                ["api", "web"], opened=at(8, 12), resolved=at(8, 14)
            ),  # blamed on both deploys
            deploy("api", at(8, 13)),  # rework of api
            deploy("web", at(8, 13.5)),  # rework of web
        ],
    )
    build(org)
    api, web = service(org, "api"), service(org, "web")
    assert (api["median_failed_deployment_recovery_minutes"], api["rework_rate_pct"]) == (
        D("240.00"),
        D("50.00"),
    )
    assert (web["median_failed_deployment_recovery_minutes"], web["rework_rate_pct"]) == (
        D("180.00"),
        D("50.00"),
    )
    for name in ("team-a", "eng"):  # the parent includes its team's events
        t = team(org, name)
        assert t["incidents"] == 1  # one incident, once per group
        assert (t["deployments"], t["failed_deployments"], t["recovered_deployments"]) == (4, 2, 2)
        assert t["median_failed_deployment_recovery_minutes"] == D(
            "210.00"
        )  # pooled: (180 + 240) / 2
        assert (t["rework_deployments"], t["rework_rate_pct"]) == (2, D("50.00"))
        assert t["failed_deployment_recovery_tier"] == "high"
    other = team(org, "team-b")
    assert (other["deployments"], other["recovered_deployments"], other["rework_deployments"]) == (
        0,
        0,
        0,
    )
    assert other["rework_rate_pct"] is None and other["failed_deployment_recovery_tier"] is None
    with org.connection() as conn:
        weekly = conn.execute(
            "select week_start, recovered_deployments, median_failed_deployment_recovery_minutes,"
            " rework_deployments from dora_metrics.team_metrics_weekly"
            " where group_ref = 'group:default/team-a' and deployments > 0"
        ).fetchall()
    assert weekly == [(date(2025, 3, 3), 2, D("210.00"), 2)]


def test_a_deployment_of_two_components_recovers_when_both_of_its_failures_do(warehouse):
    # acme/mono maps to both components: one deployment, a failure of each
    load(
        warehouse,
        [
            group("team-a"),
            component("api", "team-a", repo="acme/mono"),
            component("web", "team-a", repo="acme/mono"),
        ],
    )
    load(
        warehouse,
        [
            Deployment("test", "mono-1", "github_repo", "acme/mono", "production", at(9, 10)),
            incident(["api"], opened=at(9, 11), resolved=at(9, 12)),
            incident(["web"], opened=at(9, 11)),  # still open
        ],
    )
    build(warehouse)
    assert service(warehouse, "api")["median_failed_deployment_recovery_minutes"] == D("120.00")
    assert service(warehouse, "web")["recovered_deployments"] == 0
    t = team(warehouse, "team-a")
    assert (t["deployments"], t["failed_deployments"], t["recovered_deployments"]) == (1, 1, 0)
    assert t["median_failed_deployment_recovery_minutes"] is None


def _rework_pair(comp: str, cause_day: int, resolve_day: int) -> list:
    """A deploy at noon that causes an incident an hour later, resolved at 13:00 of
    ``resolve_day``, and a fix-forward deploy at noon of that day (rework)."""
    return [
        deploy(comp, at(cause_day)),
        incident([comp], opened=at(cause_day, 13), resolved=at(resolve_day, 13)),
        deploy(comp, at(resolve_day)),
    ]


def test_rising_rework_rate_is_an_improvement_candidate(warehouse, settings):
    rules = Warehouse(settings_with(settings, **RULE_ENV))
    load(rules, [group("team-a"), component("refix", "team-a"), component("steady", "team-a")])
    load(
        rules,
        [
            # refix: 2 of 4 recent deploys are rework, 1 of 4 before
            *_rework_pair("refix", 22, 23),
            *_rework_pair("refix", 24, 25),
            *_rework_pair("refix", 2, 5),
            deploy("refix", at(8)),
            deploy("refix", at(11)),
            # steady: 1 of 4 in both windows: not rising, no candidate
            *_rework_pair("steady", 22, 23),
            deploy("steady", at(26)),
            deploy("steady", at(27)),
            *_rework_pair("steady", 2, 5),
            deploy("steady", at(8)),
            deploy("steady", at(11)),
        ],
    )
    build(rules)
    with rules.connection() as conn:
        found = conn.execute(
            "select entity_ref, severity, finding, evidence from dora_metrics.improvement_candidates"
            " where rule = 'rising_rework_rate'"
        ).fetchall()
    assert len(found) == 1
    entity_ref, severity, finding, evidence = found[0]
    assert (entity_ref, severity) == (ref("refix"), "high")  # 50 >= 1.5 x 25
    assert finding == (
        "2 of the last 4 production deploys (last 10 days) were rework, made while an incident caused "
        "by an earlier deploy was still open (50.00 %), up from 1 of 4 (25.00 %) in the 20 days before."
    )
    assert evidence["recent_rework_deployments"] == 2 and evidence["threshold_pct"] == 15.0


def test_a_trunk_based_components_direct_changes_are_its_changes_and_its_deploys_fail_and_rework(org):
    """Direct changes (issue 18) and the DORA 2023/2024 measures (issue 15) together: a
    deployment that shipped only commits pushed to the trunk is failed, recovered and
    rework like any other, and its commits are its changes."""
    load(
        org,
        [
            DirectChange("test", "acme/api", sha(101), at(10, 9), at(10, 10)),
            deploy("api", at(10, 12), sha=sha(101), ext="ships-c1"),  # lead time 3 h
            incident(["api"], opened=at(10, 13), resolved=at(10, 18)),  # blamed on ships-c1
            DirectChange("test", "acme/api", sha(102), at(10, 13.5), at(10, 14)),
            deploy("api", at(10, 15), sha=sha(102), ext="fix-forward"),  # lead time 1.5 h, rework
            deploy("api", at(10, 20), ext="redeploy"),  # after the resolution: ships nothing, not rework
        ],
    )
    build(org)
    for m in (service(org, "api"), team(org, "team-a")):
        assert (m["deployments"], m["failed_deployments"]) == (3, 1)
        assert (m["lead_time_changes"], m["direct_changes"]) == (2, 2)
        assert m["median_lead_time_hours"] == D("2.25")
        assert m["lead_time_coverage_pct"] == D("66.67")  # 2 of 3 deploys shipped a change
        # ships-c1 finished at 12:00, its incident resolved at 18:00
        assert (m["recovered_deployments"], m["median_failed_deployment_recovery_minutes"]) == (1, D("360.00"))
        assert (m["rework_deployments"], m["rework_rate_pct"]) == (1, D("33.33"))
