"""dora_metrics.improvement_candidates: every rule on hand-built events, firing and not.

Rule windows are shortened through the environment: recent = the last 10 days before
AS_OF (2025-03-21 .. 2025-03-31), baseline = the 20 days before (2025-03-01 .. 03-21),
DORA_RULE_MIN_SAMPLE=3, DORA_RULE_MIN_INCIDENTS=2; other thresholds are the defaults
(review wait 24 h, CFR 15 %, restore 1440 min, < 2 deploys a week with PRs >= 400
lines, coverage < 50 %, survey response < 60 %, trend ratio 1.5).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from dora_pipeline.pipeline import build_and_publish
from dora_pipeline.records import PullRequest, SurveyResponse
from dora_pipeline.warehouse import Warehouse

from builders import AS_OF, UTC, component, deploy, group, incident, load, member
from conftest import settings_with

RULE_ENV = {"DORA_RULE_RECENT_DAYS": "10", "DORA_RULE_BASELINE_DAYS": "20", "DORA_RULE_MIN_SAMPLE": "3",
            "DORA_RULE_MIN_INCIDENTS": "2"}
_numbers = iter(range(1, 10**6))


def t(day: int, hour: float = 12.0, month: int = 3) -> datetime:
    return datetime(2025, month, day, tzinfo=UTC) + timedelta(hours=hour)


def merged_pr(comp: str, merged: datetime, wait_hours: float | None = None, lines: int = 50,
              merge_sha: str | None = None) -> PullRequest:
    """A PR merged at ``merged``; reviewed ``wait_hours`` after it opened, 1 h before the merge."""
    review = merged - timedelta(hours=1) if wait_hours is not None else None
    opened = (review - timedelta(hours=wait_hours)) if review else merged - timedelta(hours=2)
    return PullRequest("test", f"acme/{comp}", next(_numbers), opened_at=opened, merged_at=merged,
                       first_commit_at=opened, first_review_at=review, merge_commit_sha=merge_sha,
                       additions=lines, deletions=0)


def reviews(comp: str, days: list[int], waits: list[float]) -> list:
    return [merged_pr(comp, t(d), w) for d, w in zip(days, waits, strict=True)]


def shipped(comp: str, days: list[int], failed: tuple[int, ...] = ()) -> list:
    """A production deploy at noon of each day shipping a PR merged an hour before; an
    incident an hour after the deploys of the days in ``failed``."""
    out = []
    for d in days:
        out += [merged_pr(comp, t(d, 11)), deploy(comp, t(d))]
        if d in failed:
            out.append(incident([comp], t(d, 13), resolved=t(d, 13.5)))
    return out


def survey(team: str, survey_id: str, respondents: int, month: int) -> list:
    return [SurveyResponse("test", survey_id, f"{team}-{survey_id}-{i}", f"group:default/{team}",
                           t(2 + i, month=month), 3, 3) for i in range(respondents)]


def scenario() -> list:
    records = [group("team-a"), group("org"), group("steady", "org"), group("slipping", "org"),
               group("small", "org")]
    for name in ("review", "review-better", "review-few", "flaky", "restore", "batch", "unlinked"):
        records.append(component(name, "team-a"))
    records += [member("steady", f"s{i}") for i in range(10)]
    records += [member("slipping", f"p{i}") for i in range(10)]
    records += [member("small", f"m{i}") for i in range(3)]
    # long_review_wait: recent waits 30/40/50 h (median 40) against 10/20/30 h (median 20)
    records += reviews("review", [22, 24, 27], [30, 40, 50]) + reviews("review", [3, 6, 9], [10, 20, 30])
    # slow, but faster than its own baseline: no candidate
    records += reviews("review-better", [22, 24, 27], [30, 30, 30])
    records += reviews("review-better", [3, 6, 9], [40, 40, 40])
    # too few reviewed PRs recently (2 < DORA_RULE_MIN_SAMPLE)
    records += reviews("review-few", [22, 24], [90, 90]) + reviews("review-few", [3, 6, 9], [10, 10, 10])
    # high_change_failure_rate: 2 of 4 recent deploys failed, 1 of 4 before
    records += shipped("flaky", [22, 24, 26, 28], failed=(22, 26)) + shipped("flaky", [2, 6, 10, 14], failed=(6,))
    # slow_restore: 2000 and 3000 min recently (median 2500) against 1000 and 2000 (1500)
    for day, minutes in ((22, 2000), (25, 3000), (3, 1000), (8, 2000)):
        records.append(incident(["restore"], t(day), resolved=t(day) + timedelta(minutes=minutes), caused=False))
    # low_deploy_frequency_large_prs: 1 deploy in 10 days (0.7 a week) against 4 in 20
    # (1.4 a week), PRs of 500/600/700 lines
    records += [deploy("batch", t(25))] + [deploy("batch", t(d)) for d in (2, 7, 12, 17)]
    records += [merged_pr("batch", t(d, 10), lines=n) for d, n in ((22, 500), (23, 600), (24, 700))]
    # low_lead_time_coverage: 1 of 4 recent deploys shipped a PR (by SHA), 2 of 4 before
    records += [deploy("unlinked", t(d), sha=f"{d:040x}") for d in (22, 24, 26, 28, 2, 5, 8, 11)]
    records += [merged_pr("unlinked", t(d, 11), merge_sha=f"{d:040x}") for d in (22, 2, 8)]
    # low_survey_response_rate: slipping 8/10 -> 5/10, small 3/3 -> 1/3; steady 4/10 -> 5/10 improves
    records += survey("slipping", "pulse-1", 8, 2) + survey("slipping", "pulse-2", 5, 3)
    records += survey("small", "pulse-1", 3, 2) + survey("small", "pulse-2", 1, 3)
    records += survey("steady", "pulse-1", 4, 2) + survey("steady", "pulse-2", 5, 3)
    return records


def candidates(warehouse) -> dict[tuple[str, str], dict]:
    with warehouse.connection() as conn:
        cur = conn.execute("select * from dora_metrics.improvement_candidates")
        names = [c.name for c in cur.description]
        found = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    out = {(r["entity_ref"].split("/")[1], r["rule"]): r for r in found}
    assert len(out) == len(found), "one candidate per subject and rule"
    return out


@pytest.fixture
def rules(warehouse, settings):  # warehouse: the reader role exists
    warehouse = Warehouse(settings_with(settings, **RULE_ENV))
    load(warehouse, scenario(), day=date(2025, 3, 30))
    build_and_publish(warehouse, AS_OF)
    return warehouse


def test_each_rule_fires_only_where_the_subject_is_not_improving(rules):
    assert set(candidates(rules)) == {
        ("review", "long_review_wait"),
        ("flaky", "high_change_failure_rate"),
        ("restore", "slow_restore"),
        ("batch", "low_deploy_frequency_large_prs"),
        ("unlinked", "low_lead_time_coverage"),
        ("slipping", "low_survey_response_rate"),
        ("small", "low_survey_response_rate"),
    }


def test_dora_rules_quote_their_numbers(rules):
    found = candidates(rules)
    c = found[("review", "long_review_wait")]
    assert (c["group_ref"], c["metric"], c["severity"]) == ("group:default/team-a", "review_wait_hours", "high")
    assert c["finding"] == (
        "PRs waited a median 40.0 h for a first review over the last 10 days (3 reviewed PRs; 3 waited "
        "more than 24.0 h), up from 20.0 h in the 20 days before.")
    assert "CODEOWNERS" in c["suggestion"]
    assert c["evidence"] == {
        "recent_days": 10, "baseline_days": 20, "recent_median_review_wait_hours": 40.0,
        "baseline_median_review_wait_hours": 20.0, "recent_reviewed_prs": 3, "baseline_reviewed_prs": 3,
        "recent_prs_waiting_over_threshold": 3, "threshold_hours": 24.0}
    assert c["computed_at"] is not None

    c = found[("flaky", "high_change_failure_rate")]
    assert (c["metric"], c["severity"]) == ("change_failure_rate_pct", "high")  # 50 >= 1.5 x 25
    assert c["finding"] == (
        "2 of the last 4 production deploys (last 10 days) caused an incident (50.00 %), against 1 of 4 "
        "(25.00 %) in the 20 days before; consider a smoke-test workflow.")
    assert c["evidence"]["recent_failed_deployments"] == 2
    assert c["evidence"]["baseline_change_failure_rate_pct"] == 25.0
    assert c["evidence"]["threshold_pct"] == 15.0

    c = found[("restore", "slow_restore")]
    assert (c["metric"], c["severity"]) == ("time_to_restore_minutes", "high")  # 2500 >= 1.5 x 1500
    assert c["finding"] == (
        "Restoring service took a median 2500.0 min (41.7 h) over 2 resolved incidents in the last 10 days, "
        "the longest 50.0 h; up from 1500.0 min over 2 incidents in the 20 days before.")
    assert "rollback" in c["suggestion"] and "runbook" in c["suggestion"]
    assert c["evidence"]["recent_max_restore_minutes"] == 3000.0

    c = found[("batch", "low_deploy_frequency_large_prs")]
    assert (c["metric"], c["severity"]) == ("deploys_per_week", "high")  # 0.7 x 1.5 <= 1.4
    assert c["finding"] == (
        "1 production deploy in the last 10 days (0.70 a week, 1.40 a week in the 20 days before) while "
        "the median PR changed 600 lines (3 PRs merged).")
    assert "smaller batches" in c["suggestion"]
    assert c["evidence"]["recent_median_pr_lines"] == 600

    c = found[("unlinked", "low_lead_time_coverage")]
    assert (c["metric"], c["severity"]) == ("lead_time_coverage_pct", "high")  # 25 x 1.5 <= 50
    assert c["finding"] == (
        "Only 1 of 4 production deploys in the last 10 days could be linked to a merged PR (25.00 %, "
        "against 50.00 % in the 20 days before); 1 of the 1 PRs merged in the window that reached "
        "production matched their deploy by commit SHA.")
    assert "squash" in c["suggestion"] and "merge commit" in c["suggestion"]


def test_low_survey_response_rate_on_own_previous_survey(rules):
    found = candidates(rules)
    slipping = found[("slipping", "low_survey_response_rate")]
    assert (slipping["group_ref"], slipping["metric"], slipping["severity"]) == (
        "group:default/slipping", "survey_response_rate_pct", "high")  # 50 x 1.5 <= 80
    assert slipping["finding"] == "5 of 10 members answered pulse-2 (50.0 %), against 80.0 % in pulse-1."
    assert slipping["evidence"] == {
        "survey_id": "pulse-2", "previous_survey_id": "pulse-1", "respondents": 5, "eligible_members": 10,
        "response_rate_pct": 50.0, "previous_response_rate_pct": 80.0, "suppressed": False,
        "min_respondents": 5, "threshold_pct": 60.0}
    small = found[("small", "low_survey_response_rate")]
    assert small["finding"] == (
        "1 of 3 members answered pulse-2 (33.3 %), against 100.0 % in pulse-1. The group has fewer than 5 "
        "members, so its scores stay suppressed; its results show only in its parent group.")


def test_thresholds_are_configurable(rules, settings):
    stricter = Warehouse(settings_with(settings, **RULE_ENV, DORA_RULE_REVIEW_WAIT_HOURS="45",
                                       DORA_RULE_CHANGE_FAILURE_PCT="60"))
    build_and_publish(stricter, AS_OF)
    found = candidates(stricter)
    assert ("review", "long_review_wait") not in found
    assert ("flaky", "high_change_failure_rate") not in found
    assert ("restore", "slow_restore") in found
