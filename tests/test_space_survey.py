"""dora_metrics.team_space_survey on a hand-built organisation, k = 5 (the default).

Two catalog trees answer survey pulse-2 (March); pulse-1 (February) gives team-a a
previous survey to compare with.

    org1 ── team-a   6 members (one shared with team-b), 5 respondents  = k    published
         ├─ team-b   4 members, 4 respondents                         = k-1  fewer_than_k
         └─ team-z   3 members, nobody answered                              fewer_than_k
       org1: 9 respondents; minus published team-a leaves 4 (team-b)         complementary

    org2 ── dept-x ── team-c 5 | team-d 3 | team-e 2    dept-x: 10, residual 5  published
         └─ dept-y ── team-f 5 | team-g 1               dept-y: 6, residual 1   complementary
       org2: 16; minus published dept-x, team-f leaves 1 (team-g)             complementary
       (minus only its published *children* it would leave 6 and leak team-g)
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from dora_pipeline.pipeline import build_and_publish
from dora_pipeline.records import SurveyResponse
from dora_pipeline.warehouse import Warehouse

from builders import AS_OF, UTC, build, group, load, member
from conftest import settings_with

D = Decimal
SCORES = [f"satisfaction_{i}" for i in range(1, 6)] + [f"flow_state_{i}" for i in range(1, 6)] + [
    "satisfaction_mean", "flow_state_mean", "satisfaction_change", "flow_state_change"]


def answer(survey: str, team: str, who: str, sat: int, flow: int, day: int, month: int = 3,
           text: str | None = None) -> SurveyResponse:
    return SurveyResponse("test", survey, who, f"group:default/{team}",
                          datetime(2025, month, day, 10, tzinfo=UTC), sat, flow, blockers_text=text)


def members(team: str, count: int, prefix: str | None = None) -> list:
    return [member(team, f"{prefix or team}-u{i}") for i in range(count)]


def answers(survey: str, team: str, count: int, month: int = 3, sat: int = 3, flow: int = 3) -> list:
    return [answer(survey, team, f"{survey}-{team}-p{i}", sat, flow, 2 + i, month) for i in range(count)]


def organisation() -> list:
    catalog = [
        group("org1"), group("team-a", "org1"), group("team-b", "org1"), group("team-z", "org1"),
        group("org2"), group("dept-x", "org2"), group("dept-y", "org2"),
        group("team-c", "dept-x"), group("team-d", "dept-x"), group("team-e", "dept-x"),
        group("team-f", "dept-y"), group("team-g", "dept-y"),
        *members("team-a", 5), member("team-a", "shared"),
        *members("team-b", 3), member("team-b", "shared"),
        *members("team-z", 3),
    ]
    for team, size in (("team-c", 6), ("team-d", 4), ("team-e", 3), ("team-f", 5), ("team-g", 2)):
        catalog += members(team, size)
    return catalog


def survey_responses() -> list:
    team_a = [
        # p1 answered twice: only the latest valid answer (5, 3) counts.
        answer("pulse-2", "team-a", "p1", 1, 1, 2),
        answer("pulse-2", "team-a", "p1", 5, 3, 4, text="slow reviews"),
        answer("pulse-2", "team-a", "p2", 4, 3, 3),
        answer("pulse-2", "team-a", "p3", 4, 4, 3, text="flaky CI"),
        answer("pulse-2", "team-a", "p4", 3, 5, 5),
        answer("pulse-2", "team-a", "p5", 2, 1, 6),
    ]
    previous = [answer("pulse-1", "team-a", f"q{i}", 3, 2, 3 + i, month=2) for i in range(5)]
    previous += answers("pulse-1", "team-b", 2, month=2)
    return [
        *team_a, *previous,
        *answers("pulse-2", "team-b", 4, sat=1, flow=1),
        *answers("pulse-2", "team-c", 5), *answers("pulse-2", "team-d", 3), *answers("pulse-2", "team-e", 2),
        *answers("pulse-2", "team-f", 5), *answers("pulse-2", "team-g", 1),
    ]


def survey_rows(warehouse, survey: str = "pulse-2") -> dict[str, dict]:
    with warehouse.connection() as conn:
        cur = conn.execute("select * from dora_metrics.team_space_survey where survey_id = %s", (survey,))
        names = [c.name for c in cur.description]
        return {r[0].split("/")[1]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


@pytest.fixture
def surveyed(warehouse):
    load(warehouse, organisation(), source="catalog")
    load(warehouse, survey_responses(), day=date(2025, 3, 10))
    build(warehouse)
    return warehouse


def test_exactly_k_respondents_publish_scores_distribution_and_change(surveyed):
    a = survey_rows(surveyed)["team-a"]
    # latest answers: sat 5, 4, 4, 3, 2 -> 3.6; flow 3, 3, 4, 5, 1 -> 3.2
    assert (a["respondents"], a["eligible_members"], a["suppressed"]) == (5, 6, False)
    assert a["suppression_reason"] is None
    assert a["response_rate_pct"] == D("83.3")
    assert (a["satisfaction_mean"], a["flow_state_mean"]) == (D("3.60"), D("3.20"))
    assert [a[f"satisfaction_{i}"] for i in range(1, 6)] == [0, 1, 1, 2, 1]
    assert [a[f"flow_state_{i}"] for i in range(1, 6)] == [1, 0, 2, 1, 1]
    # pulse-1: sat 3 x5, flow 2 x5
    assert a["previous_survey_id"] == "pulse-1"
    assert (a["satisfaction_change"], a["flow_state_change"]) == (D("0.60"), D("1.20"))
    assert a["response_rate_change_pts"] == D("0.0")
    first = survey_rows(surveyed, "pulse-1")["team-a"]
    assert first["previous_survey_id"] is None and first["satisfaction_change"] is None
    assert first["period_start"] == datetime(2025, 2, 2, 10, tzinfo=UTC)  # team-b's first answer
    assert first["period_end"] == datetime(2025, 2, 7, 10, tzinfo=UTC)


def test_k_minus_one_respondents_keep_counts_and_null_every_score(surveyed):
    rows = survey_rows(surveyed)
    b = rows["team-b"]
    assert (b["respondents"], b["eligible_members"], b["response_rate_pct"]) == (4, 4, D("100.0"))
    assert (b["suppressed"], b["suppression_reason"]) == (True, "fewer_than_k")
    assert all(b[c] is None for c in SCORES)
    assert b["previous_survey_id"] == "pulse-1" and b["response_rate_change_pts"] == D("50.0")
    z = rows["team-z"]  # nobody answered: still reported, with 0 respondents
    assert (z["respondents"], z["eligible_members"], z["response_rate_pct"], z["suppressed"]) == (
        0, 3, D("0.0"), True)


def test_parent_with_one_small_child_is_suppressed(surveyed):
    org1 = survey_rows(surveyed)["org1"]
    # members: team-a 6 + team-b 4 + team-z 3, "shared" counted once
    assert (org1["respondents"], org1["eligible_members"]) == (9, 12)
    assert (org1["suppressed"], org1["suppression_reason"]) == (True, "complementary")
    assert all(org1[c] is None for c in SCORES)


def test_suppression_cascades_through_published_grandchildren(surveyed):
    rows = survey_rows(surveyed)
    published = {name for name, r in rows.items() if not r["suppressed"]}
    assert published == {"team-a", "team-c", "team-f", "dept-x"}
    assert rows["dept-x"]["satisfaction_mean"] == D("3.00")
    assert rows["dept-y"]["suppression_reason"] == "complementary"
    assert (rows["org2"]["respondents"], rows["org2"]["suppression_reason"]) == (16, "complementary")
    assert rows["org2"]["parent_ref"] is None and rows["team-c"]["parent_ref"] == "group:default/dept-x"
    # the survey period is the survey's, the same on every row
    assert {(r["period_start"], r["period_end"]) for r in rows.values()} == {
        (datetime(2025, 3, 2, 10, tzinfo=UTC), datetime(2025, 3, 6, 10, tzinfo=UTC))}


def test_k_is_configurable(surveyed, settings):
    build_and_publish(Warehouse(settings_with(settings, DORA_SURVEY_MIN_RESPONDENTS="4")), AS_OF)
    rows = survey_rows(surveyed)
    b = rows["team-b"]
    assert (b["suppressed"], b["satisfaction_mean"], b["satisfaction_1"]) == (False, D("1.00"), 4)
    # org1 = team-a + team-b exactly: residual 0, nothing new to reveal
    assert rows["org1"]["suppressed"] is False
    assert rows["org1"]["satisfaction_mean"] == D("2.44")  # (18 + 4) / 9
