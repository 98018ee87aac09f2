"""team_space_activity_weekly, lead_time_breakdown(_weekly) on hand-built PRs.

dept ── team-a owns a1 and a2, both built from the repository acme/mono (a PR of it
     │  counts once for team-a and once for dept)
     └─ team-b owns b1 (acme/b1)
Users: ann and al (GitHub login AL-GH via annotation) in team-a, bob in team-b, solo in
no team; "octocat" is a login the catalog does not know.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from dora_pipeline.records import CatalogEntity, PullRequest
from dora_pipeline.warehouse import Warehouse

from builders import UTC, build, component, deploy, group, load, member
from conftest import settings_with

D = Decimal
WEEK1, WEEK2, WEEK3, WEEK4 = (datetime(2025, 3, d).date() for d in (3, 10, 17, 24))


def t(day: int, hour: float) -> datetime:
    return datetime(2025, 3, day, tzinfo=UTC) + timedelta(hours=hour)


def user(name: str, login: str | None = None) -> CatalogEntity:
    return CatalogEntity("test", f"user:default/{name}", "user", "default", name,
                         annotations={"github.com/user-login": login} if login else {})


def pr(repo: str, number: int, opened: datetime, merged: datetime, review: datetime | None,
       lines: int, author: str, reviewer: str | None) -> PullRequest:
    return PullRequest(
        "test", repo, number, opened_at=opened, merged_at=merged, first_commit_at=opened - timedelta(hours=2),
        first_review_at=review, first_reviewer=reviewer, author=author, title=f"secret title {number}",
        additions=lines, deletions=0,
    )


@pytest.fixture
def activity(warehouse):
    load(warehouse, [
        group("dept"), group("team-a", "dept"), group("team-b", "dept"),
        component("a1", "team-a", repo="acme/mono"), component("a2", "team-a", repo="acme/mono"),
        component("b1", "team-b"),
        user("ann"), user("al", login="AL-GH"), user("bob"), user("solo"),
        member("team-a", "ann"), member("team-a", "al"), member("team-b", "bob"),
    ], source="catalog")
    load(warehouse, [
        # week 1, acme/mono
        pr("acme/mono", 1, t(3, 8), t(3, 14), t(3, 10), 120, "user:default/ann", "al-gh"),  # inside the team
        pr("acme/mono", 2, t(4, 8), t(5, 8), t(4, 20), 300, "ann", "user:default/bob"),  # outside
        pr("acme/mono", 3, t(5, 0), t(5, 10), None, 10, "user:default/ann", None),  # not reviewed
        pr("acme/mono", 4, t(6, 0), t(6, 8), t(6, 6), 50, "octocat", "user:default/ann"),  # author unknown
        pr("acme/mono", 5, t(6, 12), t(7, 12), t(6, 16), 1000, "user:default/solo", "ann"),  # author in no team
        # week 3
        pr("acme/mono", 6, t(17, 9), t(17, 12), t(17, 10), 40, "AL-GH", "user:default/ann"),
        # team-b, week 1: bob reviewed by ann (outside team-b)
        pr("acme/b1", 7, t(4, 0), t(4, 12), t(4, 1), 80, "user:default/bob", "user:default/ann"),
        # a1 ships PRs 1-5 (first deploy after their merges); a2 never deploys
        deploy("a1", t(7, 18), f"{1:040x}"),
    ])
    # The aggregates below are checked on weeks with one or two authors: no suppression here
    # (test_weeks_with_fewer_than_k_authors_publish_counts_only covers it).
    unsuppressed = Warehouse(settings_with(warehouse.settings, DORA_ACTIVITY_MIN_AUTHORS="1"))
    build(unsuppressed)
    return unsuppressed


def test_weeks_with_fewer_than_k_authors_publish_counts_only(activity):
    build(Warehouse(settings_with(activity.settings, DORA_ACTIVITY_MIN_AUTHORS="3")))
    b = weekly(activity, "team-b")[WEEK1]  # one author: bob
    assert b["suppressed"] is True and b["merged_prs"] == 1 and b["reviewed_prs"] == 1
    assert b["median_pr_cycle_hours"] is None and b["cross_team_review_pct"] is None
    assert b["median_pr_size_lines"] is None and b["cross_team_reviewed_prs"] is None
    a = weekly(activity, "team-a")[WEEK1]  # ann (as ref and login), octocat, solo: three authors
    assert a["suppressed"] is False and a["median_pr_cycle_hours"] is not None
    assert weekly(activity, "team-a")[WEEK2]["suppressed"] is False  # no PRs: nothing to suppress


def rows(warehouse, table: str, where: str, params: tuple) -> list[dict]:
    with warehouse.connection() as conn:
        cur = conn.execute(f"select * from dora_metrics.{table} where {where} order by 1, 2, 3", params)
        names = [c.name for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def weekly(warehouse, team: str) -> dict:
    found = rows(warehouse, "team_space_activity_weekly", "group_ref = %s", (f"group:default/{team}",))
    return {r["week_start"]: r for r in found}


def test_team_week_aggregates(activity):
    a = weekly(activity, "team-a")
    assert sorted(a) == [WEEK1, WEEK2, WEEK3, WEEK4]
    w1 = a[WEEK1]
    assert w1["merged_prs"] == 5  # acme/mono maps to a1 and a2: each PR once
    assert w1["median_pr_cycle_hours"] == D("10.00")  # 6, 8, 10, 24, 24
    assert w1["median_review_wait_hours"] == D("5.00")  # reviewed only: 2, 4, 6, 12
    assert w1["median_review_to_merge_hours"] == D("8.00")  # 2, 4, 12, 20
    assert w1["reviewed_prs"] == 4
    assert w1["median_pr_size_lines"] == D("120.0")  # 10, 50, 120, 300, 1000
    # basis: PR1 (al, same team) and PR2 (bob, other team); PR3 unreviewed, PR4 unknown
    # author, PR5 author in no team
    assert (w1["cross_team_review_basis_prs"], w1["cross_team_reviewed_prs"], w1["cross_team_review_pct"]) == (
        2, 1, D("50.00"))
    assert w1["parent_ref"] == "group:default/dept"
    w2 = a[WEEK2]
    assert (w2["merged_prs"], w2["median_pr_cycle_hours"], w2["cross_team_review_pct"]) == (0, None, None)
    assert (w2["reviewed_prs"], w2["cross_team_review_basis_prs"]) == (0, 0)
    w3 = a[WEEK3]
    assert (w3["merged_prs"], w3["cross_team_review_basis_prs"], w3["cross_team_review_pct"]) == (1, 1, D("0.00"))


def test_parent_pools_its_teams_and_other_team_is_separate(activity):
    b = weekly(activity, "team-b")[WEEK1]
    assert (b["merged_prs"], b["cross_team_review_basis_prs"], b["cross_team_review_pct"]) == (1, 1, D("100.00"))
    dept = weekly(activity, "dept")[WEEK1]
    assert dept["merged_prs"] == 6
    # PR1 inside; PR2 and PR7 outside the author's team
    assert (dept["cross_team_review_basis_prs"], dept["cross_team_review_pct"]) == (3, D("66.67"))
    assert dept["parent_ref"] is None


def test_lead_time_breakdown_per_component_group_and_window(activity):
    expected = {
        "prs": 5,
        "median_lead_time_hours": D("68.00"),  # 32, 44, 68, 84, 108
        "median_coding_hours": D("2.00"),
        "median_review_wait_hours": D("5.00"),  # 2, 4, 6, 12
        "median_review_hours": D("10.00"),  # 2, 4, 10 (unreviewed: opened -> merged), 12, 20
        "median_release_hours": D("56.00"),  # 6, 34, 56, 58, 100
        "dominant_stage": "release",
    }
    for entity, kind, owner in (("component:default/a1", "component", "group:default/team-a"),
                                ("group:default/team-a", "group", "group:default/team-a"),
                                ("group:default/dept", "group", "group:default/dept")):
        week = rows(activity, "lead_time_breakdown_weekly", "entity_ref = %s and week_start = %s", (entity, WEEK1))
        window = rows(activity, "lead_time_breakdown", "entity_ref = %s and window_days = 30", (entity,))
        for found in (week, window):
            assert len(found) == 1
            assert {k: found[0][k] for k in expected} == expected, entity
            assert (found[0]["entity_kind"], found[0]["group_ref"]) == (kind, owner)
    a2 = rows(activity, "lead_time_breakdown", "entity_ref = %s and window_days = 30", ("component:default/a2",))
    assert (a2[0]["prs"], a2[0]["median_lead_time_hours"], a2[0]["dominant_stage"]) == (0, None, None)
