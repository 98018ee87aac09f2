"""Several components in one repository (DESIGN §7, monorepos): a component whose
backstage.io/source-location ends in a folder gets only the PRs that change a file under
that folder; a component of the repository without a folder keeps the PRs no foldered
sibling claims. Hand-built events with hand-computed values, and the GitHub source
fetching the file lists (paged to the end) from the local GitHub.

AS_OF is 2025-03-31T00:00Z, so the 30-day window is [2025-03-01, 2025-03-31).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from dora_pipeline.pipeline import extract_partition
from dora_pipeline.records import CatalogEntity, Deployment, PullRequest, PullRequestFiles
from dora_pipeline.sources.github import (
    GRAPHQL_DOCUMENTS,
    PULL_REQUEST_FILES_QUERIES,
    GitHubSource,
)
from dora_pipeline.warehouse import Warehouse

from builders import at, build, group, load, ref, service
from conftest import REFERENCE, settings_with
from fakes.github_fake import FakeGitHub, FakePR, merged_prs

MONO = "https://github.com/acme/mono/tree/main"
TOKEN = "ghp_TESTTOKEN0123456789abcdefMONOREPO"


def mono_component(name: str, owner: str, location: str) -> CatalogEntity:
    return CatalogEntity(
        "test",
        ref(name),
        "component",
        "default",
        name,
        owner_ref=f"group:default/{owner}",
        annotations={
            "github.com/project-slug": "acme/mono",
            "backstage.io/source-location": f"url:{location}",
        },
    )


def mono_catalog() -> list[CatalogEntity]:
    """payments and ledger live in folders of acme/mono; platform is the repository root."""
    return [
        group("eng"),
        group("team-a", "eng"),
        group("team-b", "eng"),
        mono_component("payments", "team-a", f"{MONO}/services/payments/"),
        mono_component("ledger", "team-b", f"{MONO}/services/ledger"),
        mono_component("platform", "team-a", f"{MONO}/"),
    ]


def mono_pr(number: int, merged: datetime, paths: list[str] | None) -> list:
    record = PullRequest(
        "test",
        "acme/mono",
        number,
        opened_at=merged - timedelta(hours=4),
        merged_at=merged,
        first_commit_at=merged - timedelta(hours=10),
    )
    return (
        [record]
        if paths is None
        else [record, PullRequestFiles("test", "acme/mono", number, tuple(paths))]
    )


def test_source_location_folder_reads_the_annotation(conn):
    cases = {
        "url:https://github.com/acme/mono/tree/main/services/payments/": (
            "acme/mono",
            "services/payments",
        ),
        "url:https://github.com/Acme/Mono.git/blob/main/services/payments": (
            "acme/mono",
            "services/payments",
        ),
        "https://ghe.example.com/acme/mono/tree/release-1/a/b/c": ("acme/mono", "a/b/c"),
        "url:https://github.com/acme/mono/tree/main/": None,  # the repository root: no folder
        "url:https://github.com/acme/mono": None,
        "url:https://github.com/acme/mono/": None,
        "file:./catalog-info.yaml": None,
        "": None,
    }
    for location, expected in cases.items():
        found = conn.execute(
            "select repository, folder from dora_lib.source_location_folder(%s)", (location,)
        ).fetchall()
        assert found == ([expected] if expected else []), location


def test_prs_follow_the_folders_they_change(warehouse):
    load(warehouse, mono_catalog())
    load(
        warehouse,
        [
            *mono_pr(1, at(10), ["services/payments/api.py"]),
            *mono_pr(2, at(11), ["services/payments/a.py", "services/ledger/b.py"]),  # both folders
            *mono_pr(3, at(12), ["README.md"]),  # only the root
            *mono_pr(4, at(13), ["services/payments-old/x.py"]),  # a prefix, not the folder
            *mono_pr(5, at(14), None),  # no file list: the repository mapping, as before
            *mono_pr(6, at(15), ["services/ledger/c.py", "docs/ledger.md"]),  # ledger claims it
            Deployment("test", "mono-deploy", "github_repo", "acme/mono", "production", at(20)),
        ],
    )
    build(warehouse)
    with warehouse.connection() as conn:
        mapping = conn.execute(
            "select number, entity_ref, mapped_by from dora_intermediate.int_pull_request_components"
            " order by number, entity_ref"
        ).fetchall()
    payments, ledger, platform = ref("payments"), ref("ledger"), ref("platform")
    assert mapping == [
        (1, payments, "folder"),
        (2, ledger, "folder"),
        (2, payments, "folder"),
        (3, platform, "unclaimed"),
        (4, platform, "unclaimed"),
        (5, ledger, "no_file_list"),
        (5, payments, "no_file_list"),
        (5, platform, "no_file_list"),
        (6, ledger, "folder"),
    ]
    # lead time follows the mapping: one deploy of acme/mono (all three components)
    # ships every PR merged before it, each to the components it is a change of
    assert service(warehouse, "payments")["lead_time_changes"] == 3  # PRs 1, 2, 5
    assert service(warehouse, "ledger")["lead_time_changes"] == 3  # PRs 2, 5, 6
    assert service(warehouse, "platform")["lead_time_changes"] == 3  # PRs 3, 4, 5
    # SPACE PR activity too: team-a owns payments and platform, team-b ledger
    with warehouse.connection() as conn:
        activity = dict(
            conn.execute(
                "select group_ref, sum(merged_prs) from dora_metrics.team_space_activity_weekly"
                " group by group_ref"
            ).fetchall()
        )
    assert activity == {
        "group:default/team-a": 5,  # PRs 1-5; PR 2 once
        "group:default/team-b": 3,  # PRs 2, 5, 6
        "group:default/eng": 6,
    }


def test_a_foldered_component_without_a_root_sibling_leaves_root_prs_to_nobody(warehouse):
    load(
        warehouse,
        [
            group("team-a"),
            mono_component("payments", "team-a", f"{MONO}/services/payments"),
            *mono_pr(1, at(10), ["README.md"]),
            *mono_pr(2, at(11), ["services/payments/a.py"]),
            Deployment("test", "d1", "github_repo", "acme/mono", "production", at(20)),
        ],
    )
    build(warehouse)
    assert service(warehouse, "payments")["lead_time_changes"] == 1


# -- the GitHub source: file lists for repositories the catalog splits ---------------

DAY = date(2025, 3, 3)
D0 = datetime(2025, 3, 3, tzinfo=UTC)


@pytest.fixture
def fake(httpserver) -> FakeGitHub:
    github = FakeGitHub(TOKEN)
    github.install(httpserver)
    return github


def _source() -> GitHubSource:
    return GitHubSource(
        concurrency=2, backoff_base=0.001, max_retries=2, timeout=5.0, sleep=lambda _: None
    )


def _github_warehouse(settings, httpserver, **env: str) -> Warehouse:
    return Warehouse(
        settings_with(
            settings, GITHUB_TOKEN=TOKEN, GITHUB_API_URL=httpserver.url_for("/").rstrip("/"), **env
        )
    )


def test_github_fetches_file_lists_to_the_end_only_for_split_repositories(
    warehouse, settings, httpserver, fake
):
    load(warehouse, mono_catalog())
    fake.orgs["acme"] = ["acme/mono", "acme/web"]
    noon = D0 + timedelta(hours=12)
    big = (
        [f"services/payments/gen/{i:03d}.py" for i in range(200)]
        + ["services/ledger/schema.sql"]
        + [f"docs/{i:02d}.md" for i in range(49)]
    )  # 250 files: the search page's 100, then two pages from the PR's node
    fake.prs += [
        FakePR("acme/mono", 1, noon - timedelta(hours=3), noon, files=big, head_sha="a" * 40),
        FakePR(
            "acme/mono", 2, noon - timedelta(hours=2), noon, files=["README.md"], head_sha="b" * 40
        ),
        FakePR("acme/mono", 3, noon - timedelta(hours=1), noon, files=[], head_sha="c" * 40),
    ]
    # eleven more with 150 files each: one later page each
    fake.prs += [
        FakePR(
            "acme/mono",
            n,
            noon - timedelta(hours=2.5),
            noon,
            head_sha=f"{n:040x}",
            files=[f"services/payments/{n}/{i:03d}.py" for i in range(150)],
        )
        for n in range(20, 31)
    ]
    web = merged_prs("acme/web", 120, D0, start_number=100)  # same org, not split
    for pr in web:
        pr.files = ["src/app.py"]
    fake.prs += web
    wh = _github_warehouse(settings, httpserver, GITHUB_ORGS="acme")

    result = extract_partition(wh, _source(), DAY)

    assert result.rows == {"pull_requests": 134, "pull_request_files": 14}
    with wh.connection() as conn:
        files = {
            n: (paths, changed)
            for n, paths, changed in conn.execute(
                "select number, paths, changed_files from dora_raw.pull_request_files"
                " where repository = 'acme/mono'"
            )
        }
    assert files[1] == (big, 250)  # every page, in GitHub's order
    assert files[2] == (["README.md"], 1) and files[3] == ([], 0)
    assert all(
        files[n] == ([f"services/payments/{n}/{i:03d}.py" for i in range(150)], 150)
        for n in range(20, 31)
    )
    # 134 PRs: two search pages, one repository list and one request for the default
    # branches' commits of the day (direct changes). Twelve PRs need later files pages,
    # ten PRs a request: PR 1 and nine of the others, then PR 1's last page with the
    # other two.
    follow_ups = [d for d in fake.graphql_documents if d.startswith("query PullRequestFiles")]
    assert follow_ups == [PULL_REQUEST_FILES_QUERIES[9], PULL_REQUEST_FILES_QUERIES[2]]
    assert len(fake.search_queries) == 2
    assert fake.graphql_requests == 2 + 2 + 1 + 1

    # every document sent is one of GRAPHQL_DOCUMENTS and valid against GitHub's schema
    github_schema = _schema()
    from graphql import parse, validate

    assert set(fake.graphql_documents) <= set(GRAPHQL_DOCUMENTS)
    for document in set(fake.graphql_documents):
        assert validate(github_schema, parse(document)) == [], document

    build(wh, as_of=datetime(2025, 3, 31, tzinfo=UTC))
    with wh.connection() as conn:
        mapping = conn.execute(
            "select number, entity_ref from dora_intermediate.int_pull_request_components"
            " where repository = 'acme/mono' order by number, entity_ref"
        ).fetchall()
    # PR 1's only ledger file is its 201st: found on its last page
    assert mapping == [
        (1, ref("ledger")),
        (1, ref("payments")),
        (2, ref("platform")),
        (3, ref("platform")),
        *((n, ref("payments")) for n in range(20, 31)),
    ]


def test_every_files_follow_up_document_is_valid_against_githubs_schema():
    from graphql import parse, validate

    github_schema = _schema()
    for document in PULL_REQUEST_FILES_QUERIES:
        assert validate(github_schema, parse(document)) == [], document


def test_github_without_split_repositories_asks_for_no_files(warehouse, settings, httpserver, fake):
    fake.orgs["acme"] = ["acme/web"]
    fake.prs += merged_prs("acme/web", 5, D0)
    for pr in fake.prs:
        pr.files = ["src/app.py"]
    wh = _github_warehouse(settings, httpserver, GITHUB_ORGS="acme")
    result = extract_partition(wh, _source(), DAY)
    assert result.rows == {"pull_requests": 5}
    assert not any(d.startswith("query PullRequestFiles") for d in fake.graphql_documents)


def _schema():
    schema_file = REFERENCE / "github-schema.graphql"
    if not schema_file.exists():
        pytest.skip(f"{schema_file} is not available")
    from graphql import build_schema

    return build_schema(schema_file.read_text(), assume_valid_sdl=True, assume_valid=True)
