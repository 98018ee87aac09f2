"""Configuration and warehouse errors as an operator meets them (issue 13, findings 7-8).

The real CLI in a subprocess: the exit code, one line naming the variable, no traceback,
and no fragment of a secret on either stream.
"""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dora_pipeline.cli import _RedactingFilter

READER_PASSWORD = "Reader-Pw-0123456789"


def _cli(args: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess:
    full = {
        k: v for k, v in os.environ.items() if not k.startswith(("DORA_", "GITHUB_", "BACKSTAGE_"))
    }
    full.update({"DORA_HOME": str(tmp_path / "home"), **env})
    return subprocess.run(
        [sys.executable, "-m", "dora_pipeline.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if "ERROR" in line]


@pytest.mark.parametrize(
    "pattern",
    [r"(?P<e>prod)", r"prod++", r"^(?i:prod)$"],
    ids=["named-group", "possessive", "scoped-flag"],
)
def test_a_regex_postgres_rejects_exits_2_before_any_extract(
    settings, warehouse, tmp_path, pattern
):
    done = _cli(
        ["run", "--end", "2025-03-03"],
        tmp_path,
        DORA_DATABASE_URL=settings.database_url.get(),
        DORA_READER_ROLE=settings.reader_role,
        DORA_SYNTHETIC="true",
        DORA_PRODUCTION_ENVIRONMENTS=pattern,
    )
    assert done.returncode == 2, done.stderr
    [line] = _error_lines(done)
    assert "DORA_PRODUCTION_ENVIRONMENTS" in line and "PostgreSQL" in line
    assert "Traceback" not in done.stderr
    with warehouse.connection() as conn:
        assert conn.execute("select count(*) from dora_raw.extract_log").fetchone()[0] == 0


@pytest.mark.parametrize("name", ["DORA_INCIDENT_WINDOW_HOURS", "DORA_SURVEY_MIN_RESPONDENTS"])
@pytest.mark.parametrize("value", ["100000000000000000000", "1e3", "-5", "9" * 5000])
def test_an_integer_out_of_range_exits_2_naming_it(tmp_path, name, value):
    done = _cli(["migrate"], tmp_path, **{name: value})
    assert done.returncode == 2, done.stderr
    [line] = _error_lines(done)
    assert name in line and len(line) < 300 and "Traceback" not in done.stderr


def test_the_readers_credentials_as_the_warehouse_exit_3_in_one_line(settings, warehouse, tmp_path):
    with warehouse.connection() as conn:
        conn.execute(
            sql.SQL("alter role {} login password {}").format(
                sql.Identifier(settings.reader_role), sql.Literal(READER_PASSWORD)
            )
        )
        conn.commit()
    params = conninfo_to_dict(settings.database_url.get())
    params.update(user=settings.reader_role, password=READER_PASSWORD)
    done = _cli(
        ["run", "--end", "2025-03-03"],
        tmp_path,
        DORA_DATABASE_URL=make_conninfo(**params),
        DORA_READER_ROLE=settings.reader_role,
        DORA_SYNTHETIC="true",
    )
    assert done.returncode == 3, done.stderr
    [line] = _error_lines(done)
    assert "read-only" in line and "Traceback" not in done.stderr
    assert READER_PASSWORD not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        (
            "host=127.0.0.1 port=1 user=dora password=S3cretPW Hunter2xyz dbname=dora",
            ["S3cretPW", "Hunter2xyz"],
        ),
        ("postgresql://dora:p@ss-Tail9x@127.0.0.1:1/dora", ["p@ss", "ss-Tail9x", "Tail9x"]),
        ("postgresql://dora:Pw%zzBroken@127.0.0.1:1/dora", ["Pw%zz", "Broken"]),
    ],
    ids=["key-value-unquoted-space", "url-unencoded-at", "url-bad-percent"],
)
def test_a_malformed_warehouse_url_exits_2_without_any_password_fragment(tmp_path, url, fragments):
    done = _cli(["migrate"], tmp_path, DORA_DATABASE_URL=url)
    assert done.returncode == 2, done.stderr
    [line] = _error_lines(done)
    assert "DORA_DATABASE_URL" in line and "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment not in done.stderr + done.stdout


def test_an_unreachable_warehouse_exits_3_without_the_password(tmp_path):
    done = _cli(
        ["migrate"],
        tmp_path,
        DORA_DATABASE_URL="postgresql://dora:Sup3r-Secret-77@127.0.0.1:1/dora",
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "Sup3r-Secret-77" not in done.stderr


def test_a_missing_database_exits_3(settings, tmp_path):
    params = conninfo_to_dict(settings.database_url.get())
    params["dbname"] = "no_such_database_here"
    done = _cli(["migrate"], tmp_path, DORA_DATABASE_URL=make_conninfo(**params))
    assert done.returncode == 3, done.stderr
    assert len(_error_lines(done)) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("secret", ["short", "too", "characters1", "at least 16"])
def test_a_short_webhook_secret_is_never_shown_or_hinted(settings, warehouse, tmp_path, secret):
    done = _cli(
        ["webhook", "--port", "0"],
        tmp_path,
        DORA_DATABASE_URL=settings.database_url.get(),
        DORA_READER_ROLE=settings.reader_role,
        DORA_WEBHOOK_SECRET=secret,
    )
    assert done.returncode == 2, done.stderr
    [line] = _error_lines(done)
    assert line.endswith("DORA_WEBHOOK_SECRET is too short: use at least 16 characters")
    assert "***" not in done.stderr


def test_the_redactor_masks_long_secrets_only():
    import logging

    redactor = _RedactingFilter(["short", "a-long-enough-secret-value"])
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "too short; %s", ("a-long-enough-secret-value",), None
    )
    redactor.filter(record)
    assert record.getMessage() == "too short; ***"


def test_a_warehouse_error_mid_run_exits_3_without_traceback(settings, warehouse, tmp_path):
    """The pipeline's role losing a privilege mid-life is a warehouse error, not a crash."""
    with psycopg.connect(settings.database_url.get(), autocommit=True) as conn:
        conn.execute("create role dora_t_nopriv_13 login")
    try:
        params = conninfo_to_dict(settings.database_url.get())
        params["user"] = "dora_t_nopriv_13"
        params.pop("password", None)
        done = _cli(
            ["migrate"],
            tmp_path,
            DORA_DATABASE_URL=make_conninfo(**params),
            DORA_READER_ROLE=settings.reader_role,
        )
        assert done.returncode == 3, done.stderr
        assert len(_error_lines(done)) == 1 and "Traceback" not in done.stderr
    finally:
        with psycopg.connect(settings.database_url.get(), autocommit=True) as conn:
            conn.execute("drop owned by dora_t_nopriv_13")
            conn.execute("drop role dora_t_nopriv_13")
