"""GitHub App authentication against a local GitHub that checks the app's JWT with the
app's public key, issues short-lived installation tokens and refuses expired ones
with 401, as GitHub does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dora_pipeline.config import ConfigError, Settings
from dora_pipeline.pipeline import extract_partition
from dora_pipeline.sources import SourceError, get_source
from dora_pipeline.sources.github import GitHubSource
from dora_pipeline.sources.github_app import app_jwt, load_private_key
from dora_pipeline.warehouse import Warehouse

from conftest import settings_with
from fakes.github_fake import (
    FakeApp,
    FakeCommit,
    FakeDeployment,
    FakeGitHub,
    merged_prs,
    server_error,
)

APP_ID = 424242
ACME, OTHER = 1101, 2202  # installation ids
DAY = date(2025, 3, 3)
D0 = datetime(2025, 3, 3, tzinfo=UTC)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Clock:
    """Time that moves only when the fake GitHub answers (``tick``): each request is a
    ``step`` later than the one before, so an hour-long token expires after a known
    number of requests, whatever the machine's speed."""

    def __init__(self, start: float, step: float) -> None:
        self.time, self.step = start, step

    def now(self) -> float:
        return self.time

    def tick(self) -> float:
        self.time += self.step
        return self.time


@pytest.fixture
def fake(httpserver, app_key) -> FakeGitHub:
    github = FakeGitHub("ghp_personal_token_not_used_here")
    github.app = FakeApp(APP_ID, app_key.public_key(), installations={ACME: "acme", OTHER: "other"})
    github.orgs["acme"] = ["acme/api"]
    github.orgs["other"] = ["other/tool"]
    github.prs += merged_prs("acme/api", 5, D0) + merged_prs("other/tool", 2, D0, start_number=50)
    github.deployments += [
        FakeDeployment(
            "acme/api",
            i,
            f"{i:07x}abcdef",
            "production",
            D0 + timedelta(minutes=i),
            [("success", D0 + timedelta(minutes=i + 3))],
        )
        for i in range(1, 101)
    ]
    github.commits.append(
        FakeCommit("acme/api", "c" * 40, D0 + timedelta(hours=1), D0 + timedelta(hours=2))
    )
    github.install(httpserver)
    return github


def _env(httpserver, key: rsa.RSAPrivateKey, **extra: str) -> dict[str, str]:
    return {
        "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_APP_PRIVATE_KEY": _pem(key),
        "GITHUB_ORGS": "acme",
        "GITHUB_REPOS": "other/tool",
        "GITHUB_API_URL": httpserver.url_for("/").rstrip("/"),
        **extra,
    }


def _source(**options) -> GitHubSource:
    return GitHubSource(
        **{"concurrency": 1, "backoff_base": 0.001, "max_retries": 2, "timeout": 5.0, **options}
    )


# -- configuration and the JWT ---------------------------------------------------------


def test_the_key_is_read_inline_with_escaped_newlines_or_from_a_file(tmp_path, app_key):
    pem = _pem(app_key)
    inline = Settings.from_env({"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": pem})
    escaped = Settings.from_env(
        {"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": pem.replace("\n", "\\n")}
    )
    path = tmp_path / "app.pem"
    path.write_text(pem)
    from_file = Settings.from_env({"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": str(path)})
    for settings in (inline, escaped, from_file):
        assert settings.github_app_private_key.get().strip() == pem.strip()
        assert pem.splitlines()[1] not in repr(settings)
        load_private_key(settings.github_app_private_key.get())
    assert from_file.github_app_private_key.get() in from_file.secrets()


@pytest.mark.parametrize(
    "env, message",
    [
        ({"GITHUB_APP_ID": "1"}, "GITHUB_APP_PRIVATE_KEY is not set"),
        ({"GITHUB_APP_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----"}, "GITHUB_APP_ID is not set"),
        (
            {"GITHUB_APP_ID": "my-app", "GITHUB_APP_PRIVATE_KEY": "x"},
            "GITHUB_APP_ID must be a number",
        ),
        (
            {"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": "/no/such/key-SECRETPART.pem"},
            "neither a PEM private key",
        ),
        ({"GITHUB_APP_INSTALLATION_ID": "5"}, "GITHUB_APP_INSTALLATION_ID is set without"),
    ],
)
def test_incomplete_app_settings_are_configuration_errors(env, message):
    with pytest.raises(ConfigError, match=message) as raised:
        Settings.from_env(env)
    assert "SECRETPART" not in str(raised.value)


def test_a_key_that_is_no_pem_fails_without_quoting_it():
    with pytest.raises(SourceError, match="not a readable PEM private key") as raised:
        load_private_key(
            "-----BEGIN RSA PRIVATE KEY-----\nSECRETBODY\n-----END RSA PRIVATE KEY-----\n"
        )
    assert "SECRETBODY" not in str(raised.value)


def test_the_app_jwt_is_rs256_signed_and_lives_under_ten_minutes(app_key, other_key):
    now = time.time()
    token = app_jwt(str(APP_ID), app_key, now)
    claims = jwt.decode(token, app_key.public_key(), algorithms=["RS256"])
    assert claims["iss"] == str(APP_ID)
    assert claims["iat"] == int(now) - 60 and 0 < claims["exp"] - claims["iat"] <= 600
    assert claims["exp"] > now
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other_key.public_key(), algorithms=["RS256"])


def test_skip_reason_with_an_app_and_no_token(settings, app_key):
    source = get_source("github")
    app = {"GITHUB_APP_ID": "7", "GITHUB_APP_PRIVATE_KEY": _pem(app_key)}
    assert source.skip_reason(settings_with(settings, **app, GITHUB_ORGS="acme")) is None
    assert "GITHUB_APP_ID is set but GITHUB_ORGS" in source.skip_reason(
        settings_with(settings, **app)
    )


# -- a partition with installation tokens ----------------------------------------------


def test_a_partition_lands_with_installation_tokens_found_per_org_and_repository(
    settings, httpserver, fake, app_key
):
    warehouse = Warehouse(settings_with(settings, **_env(httpserver, app_key)))
    result = extract_partition(warehouse, _source(concurrency=4), DAY)
    assert result.rows == {"pull_requests": 7, "deployments": 100, "direct_changes": 1}
    # The installations were discovered through the organisation and the repository,
    # one token each, every JWT signed by the app's key (the fake verified it).
    assert "GET /api/v3/orgs/acme/installation" in fake.requests
    assert "GET /api/v3/repos/other/tool/installation" in fake.requests
    issued = sorted(i for i, _ in fake.installation_tokens.values())
    assert issued == [ACME, OTHER]
    assert fake.app_jwt_claims and all(
        c["iss"] == str(APP_ID) and c["exp"] - c["iat"] <= 600 for c in fake.app_jwt_claims
    )
    assert fake.refusals == []
    # GraphQL and REST both ran on the installation tokens (the fake refuses anything else).
    assert any(r.startswith("POST /api/graphql") for r in fake.requests)
    assert any(r.endswith("/statuses") for r in fake.requests)


def test_a_given_installation_id_skips_discovery(settings, httpserver, fake, app_key):
    env = _env(httpserver, app_key, GITHUB_APP_INSTALLATION_ID=str(ACME), GITHUB_REPOS="")
    warehouse = Warehouse(settings_with(settings, **env))
    source = _source()
    result = extract_partition(warehouse, source, DAY)
    assert result.rows["pull_requests"] == 5
    assert not any(r.endswith("/installation") for r in fake.requests)
    # the next day (a backfill) reuses the token while it is valid
    extract_partition(warehouse, source, DAY + timedelta(days=1))
    assert [i for i, _ in fake.installation_tokens.values()] == [ACME]


def test_tokens_are_renewed_before_they_expire_on_a_long_run(settings, httpserver, fake, app_key):
    # Two minutes pass per request: the hour-long token would expire after 30 requests
    # of the ~110 this partition takes. It is renewed five minutes before, so GitHub
    # never refuses one.
    clock = Clock(D0.timestamp() + 86400 * 30, step=120)
    fake.app.clock = clock.tick
    warehouse = Warehouse(settings_with(settings, **_env(httpserver, app_key, GITHUB_REPOS="")))
    result = extract_partition(warehouse, _source(clock=clock.now), DAY)
    assert result.rows["deployments"] == 100
    assert fake.refusals == []
    assert len(fake.installation_tokens) >= 3


def test_a_token_that_expires_mid_run_is_renewed_once_on_401(settings, httpserver, fake, app_key):
    # No safety margin: the source uses the token up to its last second, GitHub's clock
    # has moved on by then and answers 401; the source gets a new token and goes on.
    clock = Clock(D0.timestamp() + 86400 * 30, step=120)
    fake.app.clock = clock.tick
    warehouse = Warehouse(settings_with(settings, **_env(httpserver, app_key, GITHUB_REPOS="")))
    result = extract_partition(warehouse, _source(clock=clock.now, token_refresh_margin=0), DAY)
    assert result.rows["deployments"] == 100
    assert fake.refusals and set(fake.refusals) == {"401 expired installation token"}
    assert len(fake.installation_tokens) == len(fake.refusals) + 1


def test_a_token_refused_twice_fails_the_partition(settings, httpserver, fake, app_key):
    fake.app.token_lifetime = timedelta(0)  # every token is dead on arrival
    warehouse = Warehouse(settings_with(settings, **_env(httpserver, app_key, GITHUB_REPOS="")))
    with pytest.raises(SourceError, match="HTTP 401") as raised:
        extract_partition(warehouse, _source(), DAY)
    assert fake.refusals == ["401 expired installation token"] * 2  # one renewal, no loop
    assert not any(token in str(raised.value) for token in fake.installation_tokens)


def test_a_token_renewal_is_one_of_the_calls_attempts(settings, httpserver, fake, app_key):
    # Every answer to the deployments list is a 503 that also revokes the tokens issued so
    # far, so each attempt after the first meets a dead token: 401, renewal, and the next
    # attempt's 503 revokes the new one. A renewal that re-sent inside an attempt made
    # 2 * attempts - 1 = 5 requests here; counted as an attempt, it is 3 (max_retries 2).
    def revoke_then_503():
        fake.revoke_installation_tokens()
        return server_error(503)()

    fake.fail_next("/repos/acme/api/deployments", *[revoke_then_503] * 10)
    warehouse = Warehouse(settings_with(settings, **_env(httpserver, app_key, GITHUB_REPOS="")))
    with pytest.raises(SourceError, match=r"deployments failed after 3 attempts: HTTP 503"):
        extract_partition(warehouse, _source(), DAY)
    listed = [r for r in fake.requests if r.endswith("/repos/acme/api/deployments")]
    assert len(listed) == 3
    assert fake.refusals == ["401 unknown token"]


# -- setup problems: one clear line, exit 4 -----------------------------------------


def _problem(fake: FakeGitHub, problem: str, httpserver, app_key, other_key) -> dict[str, str]:
    if problem == "wrong key":
        return _env(httpserver, other_key)
    if problem == "not installed":
        fake.orgs["ghost"] = ["ghost/app"]
        return _env(httpserver, app_key, GITHUB_ORGS="acme,ghost", GITHUB_REPOS="")
    fake.app.suspended.add(ACME)  # revoked by the organisation's owner
    return _env(httpserver, app_key, GITHUB_REPOS="")


PROBLEMS = {
    "wrong key": "GITHUB_APP_PRIVATE_KEY is not a current key of this app",
    "not installed": f"GitHub App {APP_ID} is not installed on organisation 'ghost'",
    "revoked": f"GitHub App {APP_ID}'s installation {ACME} is suspended",
}


@pytest.mark.parametrize("problem", PROBLEMS)
def test_app_setup_problems_fail_with_one_clear_line(
    problem, settings, httpserver, fake, app_key, other_key
):
    env = _problem(fake, problem, httpserver, app_key, other_key)
    with pytest.raises(SourceError) as raised:
        extract_partition(Warehouse(settings_with(settings, **env)), _source(), DAY)
    assert PROBLEMS[problem] in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_the_cli_exits_4_naming_the_problem_and_never_the_key(
    problem, settings, httpserver, fake, app_key, other_key, tmp_path
):
    env = _problem(fake, problem, httpserver, app_key, other_key)
    key_file = tmp_path / "app.pem"  # as operators mount it: a file
    key_file.write_text(env["GITHUB_APP_PRIVATE_KEY"])
    env["GITHUB_APP_PRIVATE_KEY"] = str(key_file)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DORA_", "GITHUB_"))}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dora_pipeline.cli",
            "run",
            "--start",
            "2025-03-03",
            "--end",
            "2025-03-03",
            "--source",
            "github",
        ],
        env={
            **clean,
            **env,
            "DORA_DATABASE_URL": settings.database_url.get(),
            "DORA_HOME": str(tmp_path / "home"),
            "DORA_READER_ROLE": settings.reader_role,
            "DORA_HTTP_MAX_RETRIES": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent,
    )
    assert done.returncode == 4, done.stderr
    assert PROBLEMS[problem] in done.stderr
    body_lines = [line for line in key_file.read_text().splitlines() if "-----" not in line]
    assert not any(line in done.stderr + done.stdout for line in body_lines)


def test_an_installation_id_that_is_gone_is_named(settings, httpserver, fake, app_key):
    env = _env(httpserver, app_key, GITHUB_APP_INSTALLATION_ID="9999", GITHUB_REPOS="")
    with pytest.raises(SourceError) as raised:
        extract_partition(Warehouse(settings_with(settings, **env)), _source(), DAY)
    assert f"GitHub App {APP_ID}'s installation 9999 is gone (uninstalled or revoked)" in str(
        raised.value
    )
    assert "GITHUB_APP_INSTALLATION_ID" in str(raised.value)
