"""The GitHub source against a local GitHub that answers in GitHub's documented shapes."""

from __future__ import annotations

import logging
import math
from datetime import UTC, date, datetime, timedelta

import pytest

from dora_pipeline.pipeline import extract_partition
from dora_pipeline.records import Deployment, PullRequest
from dora_pipeline.sources import ExtractContext, SourceError, get_source
from dora_pipeline.sources.github import (
    GRAPHQL_DOCUMENTS,
    PULL_REQUEST_FILES_QUERIES,
    GitHubSource,
    github_endpoints,
    merged_search_query,
)
from dora_pipeline.warehouse import Warehouse

from conftest import REFERENCE, settings_with
from fakes.github_fake import (
    FakeDeployment,
    FakeGitHub,
    FakePR,
    FakeReview,
    graphql_error,
    graphql_rate_limited,
    merged_prs,
    primary_limit_403,
    secondary_limit,
    server_error,
    slow,
    truncated_json,
)

TOKEN = "ghp_TESTTOKEN0123456789abcdefSECRET"
DAY = date(2025, 3, 3)
D0 = datetime(2025, 3, 3, tzinfo=UTC)
SCHEMA_FILE = REFERENCE / "github-schema.graphql"


@pytest.fixture
def waits() -> list[float]:
    """The waits the source asked for; tests never really sleep on a rate limit."""
    return []


@pytest.fixture
def make_source(waits):
    def make(**overrides) -> GitHubSource:
        options = dict(
            concurrency=4, backoff_base=0.001, max_retries=3, timeout=2.0, sleep=waits.append
        )
        options.update(overrides)
        return GitHubSource(**options)

    return make


@pytest.fixture
def fake(httpserver) -> FakeGitHub:
    github = FakeGitHub(TOKEN)
    github.install(httpserver)
    return github


def _env(httpserver, suffix: str = "", **env: str) -> dict[str, str]:
    return {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": httpserver.url_for("/").rstrip("/") + suffix,
        **env,
    }


def _warehouse(settings, httpserver, suffix: str = "", **env: str) -> Warehouse:
    return Warehouse(settings_with(settings, **_env(httpserver, suffix, **env)))


def _count(conn, table: str) -> int:
    return conn.execute(f"select count(*) from dora_raw.{table}").fetchone()[0]


def _deployment(repo, id_, created, *statuses, env="production", sha=None) -> FakeDeployment:
    return FakeDeployment(repo, id_, sha or f"{id_:07x}abcdef", env, created, list(statuses))


# -- pure logic ----------------------------------------------------------------------


def test_endpoints_for_github_com_ghes_and_a_proxy():
    assert github_endpoints("https://api.github.com") == (
        github_endpoints("https://api.github.com/")
    )
    dotcom = github_endpoints("https://api.github.com")
    assert (dotcom.rest, dotcom.graphql) == (
        "https://api.github.com",
        "https://api.github.com/graphql",
    )
    for url in (
        "https://ghe.example.com",
        "https://ghe.example.com/api/v3",
        "https://ghe.example.com/api/v3/",
    ):
        ghes = github_endpoints(url)
        assert (ghes.rest, ghes.graphql) == (
            "https://ghe.example.com/api/v3",
            "https://ghe.example.com/api/graphql",
        )
    assert github_endpoints("https://github.com") == dotcom
    proxy = github_endpoints("https://proxy.example.com/github")
    assert (proxy.rest, proxy.graphql) == (
        "https://proxy.example.com/github",
        "https://proxy.example.com/github/graphql",
    )


def test_search_query_text():
    last = D0 + timedelta(days=1) - timedelta(seconds=1)
    assert merged_search_query("org:acme", D0, last) == (
        "is:pr is:merged merged:2025-03-03T00:00:00Z..2025-03-03T23:59:59Z sort:created-asc org:acme"
    )
    assert merged_search_query("repo:acme/api", D0, last, D0 - timedelta(hours=2)) == (
        "is:pr is:merged merged:2025-03-03T00:00:00Z..2025-03-03T23:59:59Z "
        "created:>=2025-03-02T22:00:00Z sort:created-asc repo:acme/api"
    )


def test_source_is_registered_and_skipped_without_credentials(settings):
    source = get_source("github")
    assert isinstance(source, GitHubSource)
    assert source.skip_reason(settings) == "GITHUB_TOKEN is not set"
    only_token = settings_with(settings, GITHUB_TOKEN=TOKEN)
    assert "GITHUB_ORGS and GITHUB_REPOS are both empty" in source.skip_reason(only_token)
    assert TOKEN not in source.skip_reason(only_token)
    assert (
        source.skip_reason(settings_with(settings, GITHUB_TOKEN=TOKEN, GITHUB_REPOS="a/b")) is None
    )
    assert extract_partition(Warehouse(settings), source, DAY) is None


# -- a full partition ----------------------------------------------------------------


def _organisation(fake: FakeGitHub) -> None:
    """acme: 150 repositories (two pages), 250 PRs merged on the day in acme/api
    (three search pages) and a few special cases; other/tool listed on its own."""
    fake.orgs["acme"] = ["Acme/API", "acme/web"] + [f"acme/svc-{i:03d}" for i in range(148)]
    fake.prs += merged_prs("Acme/API", 250, D0)
    noon = D0 + timedelta(hours=12)
    fake.prs += [
        # self-review first: the first review by someone else counts
        FakePR(
            "acme/web",
            1,
            noon - timedelta(hours=6),
            noon,
            author="carol",
            first_commit_at=noon - timedelta(days=2),
            reviews=[
                FakeReview("carol", noon - timedelta(hours=5), "COMMENTED"),
                FakeReview("dave", noon - timedelta(hours=3)),
            ],
            merge_sha="A" * 40,
            head_sha="B" * 40,
        ),
        # twelve author comments before the first other review: a follow-up page
        FakePR(
            "acme/web",
            2,
            noon - timedelta(hours=6),
            noon,
            author="erin",
            reviews=[
                FakeReview("erin", noon - timedelta(hours=5, minutes=i), "COMMENTED")
                for i in range(12)
            ]
            + [FakeReview("frank", noon - timedelta(hours=1))],
            merge_sha="c" * 40,
            head_sha="d" * 40,
        ),
        # never reviewed; squash-merged
        FakePR(
            "acme/web",
            3,
            noon - timedelta(hours=1),
            noon,
            author="gina",
            merge_sha="e" * 40,
            head_sha="f" * 40,
        ),
        # merged the day before and the day after: other partitions
        FakePR("acme/web", 4, D0 - timedelta(days=1), D0 - timedelta(seconds=1), head_sha="1" * 40),
        FakePR("acme/web", 5, D0, D0 + timedelta(days=1), head_sha="2" * 40),
        # a deleted ("ghost") author and a pending review that is not a review yet
        FakePR(
            "other/tool",
            9,
            noon - timedelta(hours=2),
            noon,
            author=None,
            reviews=[
                FakeReview("hank", None, "PENDING"),
                FakeReview("ivan", noon - timedelta(minutes=30)),
            ],
            merge_sha="9" * 40,
            head_sha="8" * 40,
        ),
    ]
    api = "acme/api"
    fake.deployments += [
        _deployment(
            api,
            1,
            D0 + timedelta(hours=10),
            ("in_progress", D0 + timedelta(hours=10)),
            ("success", D0 + timedelta(hours=10, minutes=5)),
        ),
        _deployment(
            api, 2, D0 + timedelta(hours=11), ("failure", D0 + timedelta(hours=11, minutes=3))
        ),
        _deployment(
            api,
            3,
            D0 + timedelta(hours=12),
            ("error", D0 + timedelta(hours=12, minutes=1)),
            env="staging",
        ),
        _deployment(
            api,
            4,
            D0 + timedelta(hours=13),
            ("queued", D0 + timedelta(hours=13)),
            ("in_progress", D0 + timedelta(hours=13, minutes=1)),
        ),
        _deployment(api, 5, D0 - timedelta(minutes=10), ("success", D0 + timedelta(minutes=10))),
        _deployment(
            api,
            6,
            D0 + timedelta(hours=23, minutes=55),
            ("success", D0 + timedelta(days=1, minutes=5)),
        ),
        _deployment(
            api,
            7,
            D0 + timedelta(hours=14),
            ("success", D0 + timedelta(hours=14, minutes=2)),
            ("inactive", D0 + timedelta(hours=20)),
        ),
        _deployment(
            api,
            8,
            D0 + timedelta(hours=15),
            ("failure", D0 + timedelta(hours=15, minutes=2)),
            ("success", D0 + timedelta(hours=15, minutes=9)),
        ),
    ]
    # acme/web: 130 deployments on the day (two pages), older history beyond the lookback.
    fake.deployments += [
        _deployment(
            "acme/web",
            1000 + i,
            D0 - timedelta(days=10, minutes=i),
            ("success", D0 - timedelta(days=10)),
        )
        for i in range(30)
    ]
    fake.deployments += [
        _deployment(
            "acme/web",
            2000 + i,
            D0 + timedelta(minutes=5 * i),
            ("success", D0 + timedelta(minutes=5 * i + 2)),
        )
        for i in range(130)
    ]
    # acme/svc-000 last deployed long ago: it costs no REST request
    fake.deployments.append(
        _deployment(
            "acme/svc-000", 900, D0 - timedelta(days=40), ("success", D0 - timedelta(days=40))
        )
    )
    fake.deployments.append(
        _deployment(
            "other/tool",
            3000,
            D0 + timedelta(hours=9),
            ("success", D0 + timedelta(hours=9, minutes=1)),
            env="Production",
        )
    )


def test_partition_lands_complete_with_paging_on_ghes(settings, httpserver, fake, make_source):
    _organisation(fake)
    warehouse = _warehouse(
        settings, httpserver, GITHUB_ORGS="acme", GITHUB_REPOS="other/tool,ACME/web"
    )
    result = extract_partition(warehouse, make_source(), DAY)

    assert result.rows == {"pull_requests": 250 + 3 + 1, "deployments": 6 + 130 + 1}
    assert result.quarantined == 0
    with warehouse.connection() as conn:
        prs = {
            (r[0], r[1]): r
            for r in conn.execute(
                "select repository, number, author, first_review_at, first_reviewer, first_commit_at, "
                "merge_commit_sha, head_sha, base_branch, additions, deletions, title, opened_at, merged_at, "
                "partition_date from dora_raw.pull_requests"
            )
        }
        deployments = {
            r[0]: r[1:]
            for r in conn.execute(
                "select external_id, service_key_type, service_key, repository, environment, commit_sha, "
                "started_at, finished_at, failed, partition_date from dora_raw.deployments"
            )
        }
    noon = D0 + timedelta(hours=12)
    assert {repo for repo, _ in prs} == {"acme/api", "acme/web", "other/tool"}
    assert sorted(n for repo, n in prs if repo == "acme/api") == list(range(1, 251))
    api_7 = prs[("acme/api", 7)]
    merged_7 = fake.prs[6].merged_at.replace(microsecond=0)
    assert api_7[2:11] == (
        "alice",
        merged_7 - timedelta(hours=2),
        "bob",
        merged_7 - timedelta(hours=8),
        f"{7:040x}",
        f"{7 + 10**6:040x}",
        "main",
        10,
        2,
    )
    assert api_7[14] == DAY
    # first review by someone other than the author; SHAs lower-case
    assert prs[("acme/web", 1)][3:8] == (
        noon - timedelta(hours=3),
        "dave",
        noon - timedelta(days=2),
        "a" * 40,
        "b" * 40,
    )
    assert prs[("acme/web", 2)][3:5] == (noon - timedelta(hours=1), "frank")
    assert prs[("acme/web", 3)][3:5] == (None, None)
    assert prs[("other/tool", 9)][2:5] == (None, noon - timedelta(minutes=30), "ivan")
    assert ("acme/web", 4) not in prs and ("acme/web", 5) not in prs

    assert deployments["1"] == (
        "github_repo",
        "acme/api",
        "acme/api",
        "production",
        "0000001abcdef",
        D0 + timedelta(hours=10),
        D0 + timedelta(hours=10, minutes=5),
        False,
        DAY,
    )
    assert deployments["2"][7] is True and deployments["2"][6] == D0 + timedelta(
        hours=11, minutes=3
    )
    assert deployments["3"][3] == "staging" and deployments["3"][7] is True
    assert "4" not in deployments  # no terminal status yet
    assert deployments["5"][5:7] == (D0 - timedelta(minutes=10), D0 + timedelta(minutes=10))
    assert "6" not in deployments  # finished the next day
    assert deployments["7"][6:8] == (D0 + timedelta(hours=14, minutes=2), False)
    assert deployments["8"][6:8] == (
        D0 + timedelta(hours=15, minutes=9),
        False,
    )  # retried to success
    assert deployments["3000"][3] == "Production"  # verbatim; production matching is SQL's
    assert not any(k.startswith("10") and len(k) == 4 for k in deployments)  # beyond the lookback

    # acme/web is covered by org:acme; other/tool is searched on its own.
    assert sorted(q.split()[-1] for q in fake.search_queries) == ["org:acme"] * 3 + [
        "repo:other/tool"
    ]
    # 150 repositories listed in two GraphQL pages; REST only for those with recent deployments
    assert (
        sum(d.startswith("query OwnerRepositories") for d in map(str.strip, fake.graphql_documents))
        == 2
    )
    deployment_lists = {r for r in fake.requests if r.endswith("/deployments")}
    assert deployment_lists == {
        "GET /api/v3/repos/acme/api/deployments",
        "GET /api/v3/repos/acme/web/deployments",
        "GET /api/v3/repos/other/tool/deployments",
    }
    # acme/web's deployments: two pages, then the page past the lookback is not needed.
    assert sum(r == "GET /api/v3/repos/acme/web/deployments" for r in fake.requests) == 2
    # rerunning the partition yields the same rows
    again = extract_partition(warehouse, make_source(concurrency=1), DAY)
    assert again.rows == result.rows


def test_search_requests_stay_at_one_per_hundred_prs(settings, httpserver, fake, make_source):
    fake.orgs["acme"] = ["acme/api", "acme/web"]
    fake.prs += merged_prs("acme/api", 500, D0) + merged_prs("acme/web", 450, D0)
    warehouse = _warehouse(settings, httpserver, GITHUB_ORGS="acme")
    result = extract_partition(warehouse, make_source(), DAY)
    assert result.rows["pull_requests"] == 950
    # plus one request listing the organisation's repositories, one reading their
    # default branches' commits of the day (direct changes)
    searches = len(fake.search_queries)
    assert searches == math.ceil(950 / 100) and fake.graphql_requests == searches + 2
    assert searches / 950 * 100 <= 1.1


def test_a_day_over_the_search_cap_continues_where_its_results_end(settings, httpserver, fake, make_source):
    """2,300 PRs, 2,000 of them merged in a two-hour burst, 40 created in one second right
    where the first query's 1,000 results end: every PR lands once, and the day costs
    full pages (an even split of the day into time windows spent requests on quiet hours)."""
    fake.orgs["acme"] = ["acme/api"]
    burst = merged_prs("acme/api", 2000, D0 + timedelta(hours=9), spread=timedelta(hours=2))
    # 150 earlier PRs come first in creation order, so the first query ends at burst[849]:
    # one creation second straddles that cut
    for pr in burst[830:870]:
        pr.created_at = burst[830].created_at
    fake.prs += (
        merged_prs("acme/api", 150, D0, spread=timedelta(hours=9), start_number=2001)
        + burst
        + merged_prs("acme/api", 150, D0 + timedelta(hours=11, minutes=1), spread=timedelta(hours=12), start_number=2151)
    )
    warehouse = _warehouse(settings, httpserver, GITHUB_REPOS="acme/api")
    result = extract_partition(warehouse, make_source(), DAY)
    assert result.rows["pull_requests"] == 2300
    with warehouse.connection() as conn:
        assert conn.execute(
            "select count(*), count(distinct number), min(number), max(number) from dora_raw.pull_requests"
        ).fetchone() == (2300, 2300, 1, 2300)
    day = (D0, D0 + timedelta(days=1, seconds=-1))
    queries = list(dict.fromkeys(fake.search_queries))
    assert f"created:>={burst[830].created_at:%Y-%m-%dT%H:%M:%SZ}" in queries[1]
    assert queries[0] == merged_search_query("repo:acme/api", *day)
    assert len(queries) == 3 and all("created:>=" in q for q in queries[1:])
    searches = len(fake.search_queries)
    assert searches <= math.ceil(2300 / 100) + 2
    assert searches / 2300 * 100 <= 1.1


def test_over_a_thousand_prs_created_in_one_second_is_a_clear_error(settings, httpserver, fake, make_source):
    fake.orgs["acme"] = ["acme/api"]
    prs = merged_prs("acme/api", 1001, D0)
    for pr in prs:
        pr.created_at = D0 - timedelta(days=1)
    fake.prs += prs
    warehouse = _warehouse(settings, httpserver, GITHUB_REPOS="acme/api")
    with pytest.raises(SourceError, match=r"over 1000 pull requests of repo:acme/api merged on 2025-03-03 "
                       r"were created within one second \(2025-03-02T00:00:00Z\)"):
        extract_partition(warehouse, make_source(), DAY)


@pytest.mark.parametrize(
    ("suffix", "rest", "graphql"),
    [
        ("", "/api/v3", "/api/graphql"),  # GHES host
        ("/api/v3", "/api/v3", "/api/graphql"),  # GHES REST base
        ("/github", "/github", "/github/graphql"),  # github.com shape behind a proxy path
    ],
)
def test_api_url_shapes(settings, httpserver, make_source, suffix, rest, graphql):
    fake = FakeGitHub(TOKEN, rest_prefix=rest, graphql_path=graphql)
    fake.install(httpserver)
    fake.orgs["acme"] = ["acme/api"]
    fake.prs += merged_prs("acme/api", 3, D0)
    fake.deployments.append(_deployment("acme/api", 1, D0, ("success", D0 + timedelta(minutes=1))))
    warehouse = _warehouse(settings, httpserver, suffix, GITHUB_ORGS="acme")
    assert extract_partition(warehouse, make_source(), DAY).rows == {
        "pull_requests": 3,
        "deployments": 1,
    }
    assert set(fake.requests) == {
        f"POST {graphql}",
        f"GET {rest}/repos/acme/api/deployments",
        f"GET {rest}/repos/acme/api/deployments/1/statuses",
    }


# -- rate limits, retries, broken answers ----------------------------------------------


def _small(fake: FakeGitHub) -> None:
    fake.orgs["acme"] = ["acme/api"]
    fake.prs += merged_prs("acme/api", 150, D0)
    fake.deployments.append(_deployment("acme/api", 1, D0, ("success", D0 + timedelta(minutes=1))))


@pytest.mark.parametrize(
    ("path", "fault", "expected_wait"),
    [
        (
            "/api/graphql",
            graphql_rate_limited(reset_in=30),
            (29, 32),
        ),  # 200 + RATE_LIMITED: until reset
        ("/api/graphql", secondary_limit(403, retry_after=7), (7, 7)),
        ("/api/graphql", secondary_limit(403), (60, 60)),  # no retry-after: a minute
        ("/api/graphql", secondary_limit(429, retry_after=3), (3, 3)),
        ("/deployments", secondary_limit(429), (1, 1)),
        ("/statuses", primary_limit_403(reset_in=20), (19, 21)),  # REST primary: until reset
    ],
    ids=[
        "graphql-200-rate-limited",
        "403-retry-after",
        "403-secondary",
        "429-retry-after",
        "429-bare",
        "rest-403-primary",
    ],
)
def test_rate_limits_wait_as_github_asks_then_complete(
    settings, httpserver, fake, make_source, waits, path, fault, expected_wait
):
    _small(fake)
    fake.fail_next(path, fault, after=1 if path == "/api/graphql" else 0)
    warehouse = _warehouse(settings, httpserver, GITHUB_ORGS="acme")
    result = extract_partition(warehouse, make_source(), DAY)
    assert result.rows == {"pull_requests": 150, "deployments": 1}
    assert len(waits) == 1
    low, high = expected_wait
    assert low <= waits[0] <= high


def test_5xx_and_timeouts_are_retried(settings, httpserver, fake, make_source, waits):
    _small(fake)
    fake.fail_next("/api/graphql", server_error(502), server_error(503))
    fake.fail_next("/deployments", slow(0.6))
    warehouse = _warehouse(settings, httpserver, GITHUB_ORGS="acme")
    result = extract_partition(warehouse, make_source(timeout=0.25), DAY)
    assert result.rows == {"pull_requests": 150, "deployments": 1}
    # two 5xx, then one or two timeouts (the single-threaded server is still busy)
    assert 3 <= len(waits) <= 4


def test_a_truncated_page_is_retried_once_then_read(settings, httpserver, fake, make_source):
    _small(fake)
    fake.fail_next("/api/graphql", truncated_json(), after=1)
    warehouse = _warehouse(settings, httpserver, GITHUB_ORGS="acme")
    assert extract_partition(warehouse, make_source(), DAY).rows["pull_requests"] == 150


@pytest.mark.parametrize(
    ("path", "fault", "message"),
    [
        ("/api/graphql", truncated_json(), "returned invalid JSON after 4 attempts"),
        ("/deployments", truncated_json(), "returned invalid JSON after 4 attempts"),
        ("/api/graphql", server_error(502), "failed after 4 attempts: HTTP 502"),
        ("/api/graphql", graphql_rate_limited(reset_in=5), "failed after 4 attempts: rate limited"),
    ],
    ids=["graphql-truncated", "rest-truncated", "graphql-502", "rate-limit-never-lifts"],
)
def test_exhausted_retries_fail_the_partition_and_load_nothing(
    settings, httpserver, fake, make_source, caplog, path, fault, message
):
    _small(fake)
    warehouse = _warehouse(settings, httpserver, GITHUB_ORGS="acme")
    extract_partition(warehouse, make_source(), DAY)
    with warehouse.connection() as conn:
        before = conn.execute("select * from dora_raw.pull_requests order by 1, 2").fetchall()
        logged = conn.execute("select extracted_at from dora_raw.extract_log").fetchall()
    # New data upstream, then a page that never comes back whole.
    fake.prs += merged_prs("acme/api", 20, D0 + timedelta(minutes=1), start_number=500)
    fake.fail_next(path, *[fault] * 8, after=1 if path == "/api/graphql" else 0)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError) as excinfo:
        extract_partition(warehouse, make_source(), DAY)
    assert message in str(excinfo.value)
    assert TOKEN not in str(excinfo.value) and TOKEN not in caplog.text
    with warehouse.connection() as conn:
        assert (
            conn.execute("select * from dora_raw.pull_requests order by 1, 2").fetchall() == before
        )
        assert conn.execute("select extracted_at from dora_raw.extract_log").fetchall() == logged
        assert _count(conn, "deployments") == 1


def test_graphql_errors_fail_with_github_message(settings, httpserver, fake, make_source):
    _small(fake)
    fake.fail_next(
        "/api/graphql",
        graphql_error("Could not resolve to an Organization with the login of 'acme'."),
    )
    warehouse = _warehouse(settings, httpserver, GITHUB_ORGS="acme")
    with pytest.raises(SourceError, match="Could not resolve to an Organization"):
        extract_partition(warehouse, make_source(), DAY)
    with warehouse.connection() as conn:
        assert _count(conn, "pull_requests") == 0 and _count(conn, "extract_log") == 0


def test_bad_credentials_fail_clearly_without_the_token(settings, httpserver, fake, make_source):
    _small(fake)
    warehouse = Warehouse(
        settings_with(
            settings, **{**_env(httpserver), "GITHUB_TOKEN": "wrong-token", "GITHUB_ORGS": "acme"}
        )
    )
    with pytest.raises(SourceError, match="HTTP 401") as excinfo:
        extract_partition(warehouse, make_source(), DAY)
    assert "wrong-token" not in str(excinfo.value)


def test_concurrency_does_not_change_the_records(settings, httpserver, fake, make_source):
    _organisation(fake)
    ctx = ExtractContext(
        settings=settings_with(
            settings, **_env(httpserver, GITHUB_ORGS="acme", GITHUB_REPOS="other/tool")
        ),
        warehouse_url="",
    )
    serial = make_source(concurrency=1).extract(DAY, ctx)
    parallel = make_source(concurrency=8).extract(DAY, ctx)
    assert serial == parallel
    assert {type(r) for r in serial} == {PullRequest, Deployment}


# -- GraphQL documents against GitHub's schema ---------------------------------------


@pytest.fixture(scope="module")
def github_schema():
    if not SCHEMA_FILE.exists():
        pytest.skip(f"{SCHEMA_FILE} is not available")
    from graphql import build_schema

    return build_schema(SCHEMA_FILE.read_text(), assume_valid_sdl=True, assume_valid=True)


def test_every_graphql_document_sent_is_valid_against_githubs_schema(
    github_schema, settings, httpserver, fake, make_source
):
    from graphql import parse, validate

    _organisation(fake)
    ctx = ExtractContext(
        settings=settings_with(
            settings, **_env(httpserver, GITHUB_ORGS="acme", GITHUB_REPOS="other/tool")
        ),
        warehouse_url="",
    )
    make_source().extract(DAY, ctx)
    sent = set(fake.graphql_documents)
    # the search, the review follow-up, the repository list and both default-branch
    # histories ran; the file follow-ups are sent in tests/test_monorepo.py
    assert sent == set(GRAPHQL_DOCUMENTS) - set(PULL_REQUEST_FILES_QUERIES)
    for document in sent:
        assert validate(github_schema, parse(document)) == [], document
