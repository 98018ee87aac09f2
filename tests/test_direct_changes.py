"""Changes without a pull request (DESIGN §7): commits pushed straight to the default
branch, read from a local GitHub that answers ``history`` on GitHub's GraphQL schema,
landed in dora_raw.direct_changes, given a lead time and counted in the four DORA marts.

The hand-built day (acme/api, 2025-03-03, times UTC) and what each case must give:

- cA: pushed, authored 08:00, committed 09:00, deployed by its own SHA at 10:00 -> 2 h
- cB: authored 10:30, committed 11:00, no deploy of its SHA; the next deploy is 12:00 -> 1.5 h
- cC: authored 11:00, committed 11:30, deployed by its SHA at 12:00 -> 1 h
- cS: the squash commit of PR #5 -> not a direct change (PR #5: 07:00 -> 14:00 = 7 h)
- cP, cM: a commit PR #6 carried and PR #6's merge commit -> not direct (PR #6: 2 h)
- cU: associated only with a closed, unmerged PR; authored 16:00, committed 16:30,
  shipped by the next day's 09:00 deploy -> 17 h
Lead times of the component: 1, 1.5, 2, 2, 7, 17 -> median 2 h, 6 changes, 4 direct.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from dora_pipeline.pipeline import build_and_publish, extract_partition
from dora_pipeline.records import DirectChange
from dora_pipeline.sources import ExtractContext, get_source
from dora_pipeline.sources.github import (
    OWNER_HISTORY_QUERY,
    REPOSITORY_HISTORY_QUERY,
    GitHubSource,
    direct_change_record,
)
from dora_pipeline.warehouse import Warehouse

from conftest import REFERENCE, settings_with
from fakes.backstage_fake import FakeBackstage, component, group
from fakes.github_fake import FakeCommit, FakeDeployment, FakeGitHub, FakePR

TOKEN = "ghp_DIRECTCHANGES0123456789SECRET"
BACKSTAGE_TOKEN = "backstage-direct-SECRET"
D0 = datetime(2025, 3, 3, tzinfo=UTC)
DAY, NEXT_DAY = date(2025, 3, 3), date(2025, 3, 4)


def at(hours: float, day: int = 0) -> datetime:
    return D0 + timedelta(days=day, hours=hours)


def sha(label: str) -> str:
    return (label.encode().hex() * 40)[:40]


API_DIRECT = {"ca", "cb", "cc", "cu"}


def _github(fake: FakeGitHub) -> None:
    fake.orgs["acme"] = ["acme/api", "acme/batch", "acme/stale", "acme/fork"]
    # a fork's default branch carries its upstream's commits: no changes of acme's
    fake.forks.add("acme/fork")
    fake.commits.append(FakeCommit("acme/fork", sha("f1"), at(8), at(12)))
    fake.orgs["solo"] = ["solo/tool"]  # a user's repository, listed in GITHUB_REPOS
    api = "acme/api"
    fake.commits += [
        FakeCommit(api, sha("ca"), at(8), at(9)),
        FakeCommit(api, sha("cb"), at(10.5), at(11)),
        FakeCommit(api, sha("cc"), at(11), at(11.5)),
        FakeCommit(api, sha("cs"), at(6), at(13), prs=[(5, True, sha("cs"))]),
        FakeCommit(api, sha("cp"), at(14), at(14.5), prs=[(6, True, sha("cm"))]),
        FakeCommit(api, sha("cm"), at(15), at(15), prs=[(6, True, sha("cm"))]),
        FakeCommit(api, sha("cu"), at(16), at(16.5), prs=[(7, False, None)]),
        # committed the day before: that partition's
        FakeCommit(api, sha("c0"), at(-3), at(-2)),
    ]
    # acme/batch: 105 pushes on the next day, two history pages; no deployment.
    fake.commits += [
        FakeCommit("acme/batch", f"{i + 1:040x}", at(1 + i / 10, 1), at(1 + i / 10, 1))
        for i in range(105)
    ]
    # solo/tool, listed in GITHUB_REPOS: one push on the day
    fake.commits.append(FakeCommit("solo/tool", sha("t1"), at(9), at(9)))
    fake.prs += [
        FakePR(
            api, 5, at(12), at(13), first_commit_at=at(7), merge_sha=sha("cs"), head_sha=sha("h5")
        ),
        FakePR(
            api,
            6,
            at(14.2),
            at(15),
            first_commit_at=at(14),
            merge_sha=sha("cm"),
            head_sha=sha("cp"),
        ),
    ]
    deploys = [
        (1, sha("ca"), at(10)),
        (2, sha("cc"), at(12)),
        (3, sha("cs"), at(14)),
        (4, sha("cm"), at(16)),
        (5, sha("ff"), at(9, 1)),  # ships no commit by its SHA
    ]
    fake.deployments += [
        FakeDeployment(api, i, s, "production", when - timedelta(minutes=5), [("success", when)])
        for i, s, when in deploys
    ]


def _backstage() -> list[dict]:
    return [
        component("api", "team-trunk", annotations={"github.com/project-slug": "acme/api"}),
        group("engineering"),
        group("team-trunk", parent="engineering"),
    ]


@pytest.fixture
def github(httpserver) -> FakeGitHub:
    fake = FakeGitHub(TOKEN)
    _github(fake)
    FakeBackstage(BACKSTAGE_TOKEN, _backstage()).install(httpserver)
    fake.install(httpserver)
    return fake


def _settings(settings, httpserver):
    url = httpserver.url_for("/").rstrip("/")
    return settings_with(
        settings,
        GITHUB_TOKEN=TOKEN,
        GITHUB_ORGS="acme",
        GITHUB_REPOS="solo/tool",
        GITHUB_API_URL=url,
        BACKSTAGE_URL=url,
        BACKSTAGE_TOKEN=BACKSTAGE_TOKEN,
    )


def _source() -> GitHubSource:
    return GitHubSource(concurrency=2, backoff_base=0.001, max_retries=2, timeout=5.0)


def test_a_commit_is_direct_only_when_no_merged_pull_request_contains_it():
    commit = {
        "oid": "ABCDEF1",
        "authoredDate": "2025-03-03T08:00:00Z",
        "committedDate": "2025-03-03T09:00:00Z",
    }
    record = direct_change_record("Acme/API", {**commit, "associatedPullRequests": {"nodes": []}})
    assert record == DirectChange("github", "acme/api", "abcdef1", at(8), at(9))
    closed = {"nodes": [{"number": 7, "merged": False, "mergeCommit": None}]}
    assert (
        direct_change_record("acme/api", {**commit, "associatedPullRequests": closed}) is not None
    )
    merged = {"nodes": [{"number": 7, "merged": False}, {"number": 8, "merged": True}]}
    assert direct_change_record("acme/api", {**commit, "associatedPullRequests": merged}) is None


def test_the_default_branch_history_lands_only_direct_changes(settings, httpserver, github):
    warehouse = Warehouse(_settings(settings, httpserver))
    source = _source()
    first = extract_partition(warehouse, source, DAY)
    second = extract_partition(warehouse, source, NEXT_DAY)
    assert first.rows["direct_changes"] == len(API_DIRECT) + 1 and first.quarantined == 0
    assert second.rows["direct_changes"] == 105 and second.quarantined == 0
    with warehouse.connection() as conn:
        rows = conn.execute(
            "select repository, sha, authored_at, committed_at, partition_date "
            "from dora_raw.direct_changes order by committed_at, sha"
        ).fetchall()
    by_repo: dict[str, list] = {}
    for row in rows:
        by_repo.setdefault(row[0], []).append(row)
    assert {r[1] for r in by_repo["acme/api"]} == {sha(c) for c in API_DIRECT}
    assert by_repo["acme/api"][0][1:] == (sha("ca"), at(8), at(9), DAY)
    assert len(by_repo["acme/batch"]) == 105 and {r[4] for r in by_repo["acme/batch"]} == {NEXT_DAY}
    assert [r[1] for r in by_repo["solo/tool"]] == [sha("t1")]
    assert "acme/fork" not in by_repo

    # One owner listing per day (acme/stale, pushed long ago, ends it), acme/batch's
    # second page on the next day, and solo/tool once per day.
    owner = [d for d in github.graphql_documents if d == OWNER_HISTORY_QUERY]
    repository = [d for d in github.graphql_documents if d == REPOSITORY_HISTORY_QUERY]
    assert len(owner) == 2 and len(repository) == 2 + 1

    # Re-running a day yields the same rows.
    assert extract_partition(warehouse, source, NEXT_DAY).rows == second.rows
    with warehouse.connection() as conn:
        assert conn.execute("select count(*) from dora_raw.direct_changes").fetchone()[0] == len(
            rows
        )


def test_direct_changes_get_a_lead_time_and_count_in_the_dora_marts(
    settings, warehouse, httpserver, github
):
    # ``warehouse`` (the fixture) created the reader role the publish grants to.
    warehouse = Warehouse(_settings(settings, httpserver))
    source = _source()
    extract_partition(warehouse, get_source("backstage"), NEXT_DAY)
    for day in (DAY, NEXT_DAY):
        extract_partition(warehouse, source, day)
    build_and_publish(warehouse, at(0, 2))

    with warehouse.connection() as conn:
        shipped = {
            r[0]: r[1:]
            for r in conn.execute(
                "select change_id, matched_by, deployment_id, lead_time_hours::float8 "
                "from dora_intermediate.int_direct_changes_deployed where entity_ref = 'component:default/api'"
            )
        }
        service = conn.execute(
            "select lead_time_changes, direct_changes, median_lead_time_hours, lead_time_coverage_pct, deployments "
            "from dora_metrics.service_metrics where entity_ref = 'component:default/api' and window_days = 7"
        ).fetchone()
        team = conn.execute(
            "select lead_time_changes, direct_changes, median_lead_time_hours "
            "from dora_metrics.team_metrics where group_ref = 'group:default/team-trunk' and window_days = 7"
        ).fetchone()
        weekly = conn.execute(
            "select s.lead_time_changes, s.direct_changes, t.direct_changes "
            "from dora_metrics.service_metrics_weekly as s "
            "join dora_metrics.team_metrics_weekly as t on t.week_start = s.week_start "
            "where s.entity_ref = 'component:default/api' and t.group_ref = 'group:default/team-trunk' "
            "and s.week_start = '2025-03-03'"
        ).fetchone()
        breakdown = conn.execute(
            "select prs from dora_metrics.lead_time_breakdown "
            "where entity_ref = 'component:default/api' and window_days = 7"
        ).fetchone()
        batch = conn.execute(
            "select count(*), count(deployment_id) from dora_intermediate.int_direct_changes_deployed "
            "where entity_ref = 'component:default/batch'"
        ).fetchone()

    assert shipped == {
        f"acme/api@{sha('ca')}": ("sha", "github:1", 2.0),
        f"acme/api@{sha('cb')}": ("next_deploy", "github:2", 1.5),
        f"acme/api@{sha('cc')}": ("sha", "github:2", 1.0),
        f"acme/api@{sha('cu')}": ("next_deploy", "github:5", 17.0),
    }
    assert service == (6, 4, Decimal("2.00"), Decimal("100.00"), 5)
    assert team == (6, 4, Decimal("2.00"))
    assert weekly == (6, 4, 4)  # Monday and Tuesday: one ISO week
    assert breakdown == (2,)  # the PR stages count PRs only
    assert batch == (105, 0)  # landed, never deployed: no lead time


# -- GraphQL documents against GitHub's schema ---------------------------------------


@pytest.fixture(scope="module")
def github_schema():
    schema_file = REFERENCE / "github-schema.graphql"
    if not schema_file.exists():
        pytest.skip(f"{schema_file} is not available")
    from graphql import build_schema

    return build_schema(schema_file.read_text(), assume_valid_sdl=True, assume_valid=True)


def test_history_documents_sent_are_valid_against_githubs_schema(
    github_schema, settings, httpserver, github
):
    from graphql import parse, validate

    ctx = ExtractContext(settings=_settings(settings, httpserver), warehouse_url="")
    _source().extract(NEXT_DAY, ctx)
    sent = set(github.graphql_documents)
    assert {OWNER_HISTORY_QUERY, REPOSITORY_HISTORY_QUERY} <= sent
    for document in sent:
        assert validate(github_schema, parse(document)) == [], document
