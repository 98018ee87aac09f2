"""End to end: only GITHUB_*, BACKSTAGE_* and a survey CSV folder configured,
``dora-pipeline run`` fills dora_raw and publishes per-component and per-team metrics
for the catalog's owners (numbers computed by hand below)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from dora_pipeline.cli import main

from fakes.backstage_fake import FakeBackstage, component, group, user
from fakes.github_fake import FakeDeployment, FakeGitHub, FakePR, FakeReview

GITHUB_TOKEN = "ghp_E2ETOKEN000000000000000000SECRET"
BACKSTAGE_TOKEN = "backstage-e2e-SECRET"


def t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


def _backstage() -> list[dict]:
    return [
        component(
            "payments-api", "team-a", annotations={"github.com/project-slug": "acme/payments-api"}
        ),
        component(
            "web-shop",
            "group:default/team-b",
            annotations={"github.com/project-slug": "Acme/Web-Shop"},
        ),
        group("engineering"),
        group("team-a", parent="engineering", members=["jane"]),
        group("team-b", parent="engineering"),
        user("jane", member_of=["team-a"]),
        user("kim", member_of=["team-b"]),
    ]


def _github(fake: FakeGitHub) -> None:
    fake.orgs["acme"] = ["acme/payments-api", "Acme/Web-Shop", "acme/legacy"]
    fake.prs += [
        # shipped by the deploy of its merge commit: lead time 6 h
        FakePR(
            "acme/payments-api",
            1,
            t(2, 9),
            t(2, 12),
            author="jane",
            first_commit_at=t(2, 8),
            reviews=[FakeReview("kim", t(2, 10))],
            merge_sha="a1" * 20,
            head_sha="b1" * 20,
        ),
        # no deploy of its SHAs: the next production deploy ships it: 36 h
        FakePR(
            "acme/payments-api",
            2,
            t(3, 9),
            t(4, 10),
            author="jane",
            first_commit_at=t(3, 0),
            merge_sha="a2" * 20,
            head_sha="b2" * 20,
        ),
        # squash merge: its head SHA is deployed: 25 h
        FakePR(
            "Acme/Web-Shop",
            3,
            t(5, 9, 30),
            t(5, 11),
            author="kim",
            first_commit_at=t(5, 9),
            merge_sha="a3" * 20,
            head_sha="b3" * 20,
        ),
    ]
    fake.deployments += [
        FakeDeployment(
            "acme/payments-api", 11, "a1" * 20, "production", t(2, 13), [("success", t(2, 14))]
        ),
        FakeDeployment(
            "acme/payments-api", 12, "c2" * 20, "production", t(4, 11), [("success", t(4, 12))]
        ),
        FakeDeployment(
            "acme/payments-api", 13, "c3" * 20, "production", t(5, 8), [("failure", t(5, 8, 5))]
        ),
        FakeDeployment(
            "acme/payments-api", 14, "c4" * 20, "staging", t(5, 9), [("success", t(5, 9, 5))]
        ),
        FakeDeployment(
            "Acme/Web-Shop", 21, "b3" * 20, "production", t(6, 9), [("success", t(6, 10))]
        ),
        FakeDeployment("Acme/Web-Shop", 22, "b3" * 20, "prod", t(7, 9), [("success", t(7, 9, 30))]),
        FakeDeployment(
            "acme/legacy", 31, "d1" * 20, "production", t(6, 15), [("success", t(6, 16))]
        ),
    ]


def test_run_publishes_component_and_team_metrics(
    monkeypatch, restore_logging, settings, httpserver, tmp_path, database_url
):
    FakeBackstage(BACKSTAGE_TOKEN, _backstage()).install(httpserver)
    github = FakeGitHub(GITHUB_TOKEN)
    github.install(httpserver)
    _github(github)
    surveys = tmp_path / "surveys"
    surveys.mkdir()
    (surveys / "q1.csv").write_text(
        "user_ref,group_ref,survey_id,submitted_at,satisfaction,flow_state,blockers_text\n"
        "user:default/jane,team-a,q1,2025-03-04T10:00:00Z,4,3,\n"
        "user:default/kim,team-b,q1,2025-03-04T11:00:00Z,6,3,\n"
    )
    env = {
        "DORA_DATABASE_URL": database_url,
        "DORA_HOME": str(settings.home),
        "DORA_READER_ROLE": settings.reader_role,
        "DORA_PSEUDONYM_KEY": "e2e-key",
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "GITHUB_ORGS": "acme",
        "GITHUB_API_URL": httpserver.url_for("/").rstrip("/"),
        "BACKSTAGE_URL": httpserver.url_for("/").rstrip("/"),
        "BACKSTAGE_TOKEN": BACKSTAGE_TOKEN,
        "SURVEY_CSV_DIR": str(surveys),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    code = main(
        [
            "run",
            "--start",
            "2025-03-01",
            "--end",
            "2025-03-07",
            "--source",
            "backstage",
            "--source",
            "github",
            "--source",
            "survey",
        ]
    )
    assert code == 0

    import psycopg

    with psycopg.connect(database_url) as conn:
        raw = {
            table: conn.execute(f"select count(*) from dora_raw.{table}").fetchone()[0]
            for table in (
                "catalog_entities",
                "group_memberships",
                "pull_requests",
                "deployments",
                "survey_responses",
            )
        }
        assert raw == {
            "catalog_entities": 7,
            "group_memberships": 2,
            "pull_requests": 3,
            "deployments": 7,
            "survey_responses": 1,
        }
        assert (
            conn.execute("select count(*) from dora_raw.quarantine").fetchone()[0] == 1
        )  # kim's 6

        service = {
            r[0]: r[1:]
            for r in conn.execute(
                "select entity_ref, owner_ref, deployments, deploy_days, deploys_per_day, deployment_frequency_tier, "
                "median_lead_time_hours, lead_time_changes, lead_time_coverage_pct, lead_time_tier, "
                "change_failure_rate_pct, failed_attempts from dora_metrics.service_metrics where window_days = 7"
            )
        }
        team = {
            r[0]: r[1:]
            for r in conn.execute(
                "select group_ref, parent_ref, deployments, deploys_per_day, median_lead_time_hours, "
                "lead_time_changes, lead_time_coverage_pct, lead_time_tier, failed_attempts "
                "from dora_metrics.team_metrics where window_days = 7"
            )
        }
        window = conn.execute(
            "select distinct window_start, window_end from dora_metrics.service_metrics where window_days = 7"
        ).fetchall()

    assert window == [(t(1, 0), t(8, 0))]
    d = Decimal
    assert service["component:default/payments-api"] == (
        "group:default/team-a",
        2,
        2,
        d("0.2857"),
        "high",
        d("21.00"),
        2,
        d("100.00"),
        "elite",
        d("0.00"),
        1,
    )
    assert service["component:default/web-shop"] == (
        "group:default/team-b",
        2,
        2,
        d("0.2857"),
        "high",
        d("25.00"),
        1,
        d("50.00"),
        "high",
        d("0.00"),
        0,
    )
    # acme/legacy: no catalog entry claims it, so it falls back to its name, owner unknown
    legacy = service["component:default/legacy"]
    assert (legacy[0], legacy[1], legacy[6], legacy[7]) == (None, 1, 0, d("0.00"))

    assert team["group:default/team-a"] == (
        "group:default/engineering",
        2,
        d("0.2857"),
        d("21.00"),
        2,
        d("100.00"),
        "elite",
        1,
    )
    assert team["group:default/team-b"][1:5] == (2, d("0.2857"), d("25.00"), 1)
    # the parent pools its teams' events: lead times 6, 36 and 25 h -> median 25
    assert team["group:default/engineering"] == (
        None,
        4,
        d("0.5714"),
        d("25.00"),
        3,
        d("75.00"),
        "high",
        1,
    )
