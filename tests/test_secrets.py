"""Secrets never leak: not into logs, stdout/stderr, exception messages, Dagster's event
log, nor any table of the warehouse.

Every secret gets a sentinel value. The sources point at a local vendor that refuses
everything and quotes back every header it received (the worst case for error
messages), so each source's error path runs; the CLI runs each source, a successful
run, ``migrate`` and ``db url``; Dagster materialises an extract asset (failing and
succeeding). Then every captured output, every log record (before the CLI's redacting
filter, which must not be what saves us), every exception string, every Dagster event
and every text of every table in the database are searched for the sentinels.
"""

from __future__ import annotations

import json
import logging
import os
import re
import traceback
from datetime import date
from pathlib import Path

import dagster
import psycopg
import pytest
from dagster import AssetKey, materialize
from dagster._serdes import serialize_value
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dora_pipeline.cli import main
from dora_pipeline.config import Settings
from dora_pipeline.defs.assets import build_assets
from dora_pipeline.defs.resources import WarehouseResource
from dora_pipeline.pipeline import extract_partition
from dora_pipeline.sources import SourceError, get_source
from dora_pipeline.warehouse import Warehouse, WarehouseUnavailable

import faults
from conftest import settings_with

SENTINELS = {
    "GITHUB_TOKEN": "SENTINEL-gh-token-123",
    "PAGERDUTY_TOKEN": "SENTINEL-pd-token-456",
    "OPSGENIE_API_KEY": "SENTINEL-og-key-789",
    "BACKSTAGE_TOKEN": "SENTINEL-bs-token-012",
    "DORA_WEBHOOK_SECRET": "SENTINEL-webhook-secret-345",
    "DORA_READER_PASSWORD": "SENTINEL-reader-pw-678",
    "DORA_PSEUDONYM_KEY": "SENTINEL-pseudonym-key-901",
}
DB_PASSWORD = "SENTINEL-db-pw-234"
SURVEY_PASSWORD = "SENTINEL-survey-pw-567"
ALL = [*SENTINELS.values(), DB_PASSWORD, SURVEY_PASSWORD]
FOUND = re.compile("|".join(re.escape(s) for s in ALL) + "|SENTINEL-")
DAY = date(2025, 3, 3)


def _echoing(request: faults.Request) -> faults.Reply:
    """A vendor that refuses everything and quotes the request back, headers included."""
    return faults.json_reply({"message": "Bad credentials", "you_sent": request.headers,
                              "path": request.target}, 401)


class Collect(logging.Handler):
    """Every record of the dora_pipeline loggers, formatted with its exception, before any
    filter of the CLI's handler has a chance to redact it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        self.lines.append(text)


@pytest.fixture
def env(settings, monkeypatch, tmp_path):
    """The environment of a deployment whose every secret is a sentinel, its vendors
    refusing everything."""
    params = conninfo_to_dict(settings.database_url.get())
    params["password"] = DB_PASSWORD  # the test server trusts local connections: ignored
    with faults.FaultyServer(_echoing) as vendor:
        values = {
            **SENTINELS,
            "DORA_DATABASE_URL": make_conninfo(**params),
            "DORA_HOME": str(tmp_path / "home"),
            "DORA_READER_ROLE": settings.reader_role,
            "DORA_HTTP_MAX_RETRIES": "1",
            "GITHUB_ORGS": "acme",
            "GITHUB_API_URL": vendor.url,
            "PAGERDUTY_API_URL": vendor.url,
            "OPSGENIE_API_URL": vendor.url,
            "BACKSTAGE_URL": vendor.url,
            "ARGOCD_KUBECONFIG": "off",
            "SURVEY_DATABASE_URL": f"postgresql://survey:{SURVEY_PASSWORD}@127.0.0.1:9/portal",
            "DORA_SYNTHETIC_TEAMS": "2", "DORA_SYNTHETIC_SERVICES": "4", "DORA_SYNTHETIC_DAYS": "3",
            "DORA_SYNTHETIC_END": "2025-03-04",
        }
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        collect = Collect()
        logger = logging.getLogger("dora_pipeline")
        logger.addHandler(collect)
        try:
            yield values, collect
        finally:
            logger.removeHandler(collect)


def _leaks(texts) -> list[str]:
    return [text[max(0, m.start() - 80):m.end() + 40] for text in texts for m in FOUND.finditer(str(text))]


def _database_leaks(url: str) -> list[str]:
    """Every row of every table of every schema, as text, searched for the sentinels."""
    found = []
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema not in ('pg_catalog', 'information_schema') and table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            rows = conn.execute(sql.SQL("select t::text from {} as t where t::text like %s").format(
                sql.Identifier(schema, table)), ("%SENTINEL-%",)).fetchall()
            found += [f"{schema}.{table}: {row[0][:200]}" for row in rows]
        # Role passwords are kept as SCRAM verifiers, never as the password itself.
        for role, verifier in conn.execute("select rolname, rolpassword from pg_authid where rolpassword is not null"):
            if "SENTINEL" in verifier or not verifier.startswith("SCRAM-SHA-256$"):
                found.append(f"pg_authid {role}: {verifier[:40]}")
        for name, setting in conn.execute("select name, setting from pg_settings"):
            if "SENTINEL" in (setting or ""):
                found.append(f"setting {name}")
    return found


def _server_log(url: str) -> str:
    """The embedded test server's log (statements that failed are logged with their text)."""
    host = conninfo_to_dict(url).get("host", "")
    path = Path(host) / "log" if host.startswith("/") else None
    return path.read_text(errors="replace") if path and path.exists() else ""


def test_no_secret_reaches_logs_output_exceptions_dagster_or_the_database(env, settings, capsys):
    values, collect = env
    outputs: list[str] = []
    log_before = _server_log(settings.database_url.get())

    with faults.inject("secrets: every source's error path through the CLI"):
        assert main(["migrate", "-v"]) == 0  # sets the reader's password
        for source in ("github", "pagerduty", "opsgenie", "backstage", "survey"):
            assert main(["run", "--start", "2025-03-03", "--end", "2025-03-03", "--source", source, "-v"]) == 4
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
        assert "source failed, nothing of that partition was loaded: github:" in captured.err
        assert "HTTP 401" in captured.err  # the vendors' refusals were read and reported

    with faults.inject("secrets: a successful run, db url"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DORA_SYNTHETIC", "true")
            assert main(["run", "--start", "2025-03-04", "--end", "2025-03-04", "--source", "synthetic"]) == 0
        assert main(["db", "url"]) == 0
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
        assert "***" in captured.out  # the URL is printed with its password masked

    with faults.inject("secrets: exception messages and reprs"):
        exceptions: list[str] = []
        current = Settings.from_env()
        exceptions += [repr(current), str(current), str(Warehouse(current).settings)]
        for name in ("github", "pagerduty", "opsgenie", "backstage", "survey"):
            with pytest.raises(SourceError) as raised:
                extract_partition(Warehouse(current), get_source(name), DAY)
            exceptions += [str(raised.value), repr(raised.value),
                           "".join(traceback.format_exception(raised.value))]
        unreachable = settings_with(current, DORA_DATABASE_URL=f"postgresql://u:{DB_PASSWORD}@127.0.0.1:9/x")
        with pytest.raises(WarehouseUnavailable) as raised:
            Warehouse(unreachable).migrate()
        exceptions += [str(raised.value), "".join(traceback.format_exception(raised.value))]
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DORA_DATABASE_URL", f"postgresql://u:{DB_PASSWORD}@127.0.0.1:9/x")
            assert main(["migrate"]) == 3
        outputs += list(capsys.readouterr())

    with faults.inject("secrets: Dagster event log of failing and succeeding extracts"):
        instance = dagster.DagsterInstance.ephemeral()
        assets = build_assets(Settings.from_env())
        resources = {"warehouse": WarehouseResource()}
        for name in ("pagerduty", "github"):
            asset = [a for a in assets if AssetKey(["dora_raw", name]) in a.keys]
            result = materialize(asset, partition_key="2025-03-03", resources=resources, instance=instance,
                                 raise_on_error=False)
            assert not result.success
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DORA_SYNTHETIC", "true")
            synthetic = [a for a in build_assets(Settings.from_env()) if AssetKey(["dora_raw", "synthetic"]) in a.keys]
            assert materialize(synthetic, partition_key="2025-03-04", resources=resources, instance=instance).success
        dagster_texts = []
        for run in instance.get_runs():
            dagster_texts.append(json.dumps(serialize_value(run)))
            for entry in instance.all_logs(run.run_id):
                dagster_texts.append(serialize_value(entry))
        assert any("HTTP 401" in text for text in dagster_texts)  # the failures are in there

    leaks = {
        "stdout/stderr": _leaks(outputs),
        "log records before redaction": _leaks(collect.lines),
        "exceptions": _leaks(exceptions),
        "dagster events": _leaks(dagster_texts),
        "database": _database_leaks(settings.database_url.get()),
        "server log": _leaks([_server_log(settings.database_url.get())[len(log_before):]]),
    }
    assert collect.lines and outputs and exceptions and dagster_texts
    assert {where: found for where, found in leaks.items() if found} == {}


def test_the_reader_password_never_reaches_the_server_in_plaintext(warehouse, settings):
    from dora_pipeline.warehouse import ensure_reader_role

    password = "SENTINEL-reader-plaintext-555"
    with_password = settings_with(settings, DORA_READER_PASSWORD=password)
    log = _server_log(settings.database_url.get())
    with warehouse.connection() as conn:
        conn.execute("set log_statement = 'all'")  # as an operator auditing statements would
        ensure_reader_role(conn, with_password)
        conn.commit()
        verifier, can_login = conn.execute(
            "select rolpassword, rolcanlogin from pg_authid where rolname = %s", (settings.reader_role,)
        ).fetchone()
    assert can_login and verifier.startswith("SCRAM-SHA-256$4096:")
    assert password not in verifier
    if not os.environ.get("DORA_DATABASE_URL"):  # the embedded test server: its log saw only the verifier
        logged = _server_log(settings.database_url.get())[len(log):]
        assert "alter role" in logged.lower() and password not in logged


def _app_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


# The base64 of a JWT's RS256 header: an app JWT in a text, whatever its claims.
JWT_HEADER = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"


@pytest.mark.parametrize("given_as", ["pem", "file", "broken pem"])
def test_the_github_app_key_never_leaks(env, settings, capsys, monkeypatch, tmp_path, given_as):
    """GitHub App authentication: the PEM key (every line of it) and the app's JWT never
    reach logs, output, exceptions, Dagster's events or the database, whether the key is
    given inline, as a file, or is no key at all (the error path that reads it)."""
    values, collect = env
    pem = _app_key_pem()
    if given_as == "broken pem":
        pem = "-----BEGIN PRIVATE KEY-----\nSENTINEL-app-key-body-0123456789\n-----END PRIVATE KEY-----\n"
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    hunted = re.compile("|".join(re.escape(s) for s in [*lines, JWT_HEADER]) + "|SENTINEL-")
    key_value = pem
    if given_as == "file":
        key_value = str(tmp_path / "app.pem")
        Path(key_value).write_text(pem)
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.setenv("GITHUB_APP_ID", "4242")
    monkeypatch.setenv("GITHUB_APP_PRIVATE_KEY", key_value)

    outputs: list[str] = []
    with faults.inject("secrets: the GitHub App's error paths through the CLI"):
        assert main(["run", "--start", "2025-03-03", "--end", "2025-03-03", "--source", "github", "-v"]) == 4
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
    expected = "not a readable PEM" if given_as == "broken pem" else "GitHub App 4242 was refused (HTTP 401)"
    assert expected in captured.err

    current = Settings.from_env()
    exceptions = [repr(current), str(current)]
    with pytest.raises(SourceError) as raised:
        extract_partition(Warehouse(current), get_source("github"), DAY)
    exceptions += [str(raised.value), repr(raised.value), "".join(traceback.format_exception(raised.value))]

    instance = dagster.DagsterInstance.ephemeral()
    asset = [a for a in build_assets(current) if AssetKey(["dora_raw", "github"]) in a.keys]
    result = materialize(asset, partition_key="2025-03-03", resources={"warehouse": WarehouseResource()},
                         instance=instance, raise_on_error=False)
    assert not result.success
    dagster_texts = [serialize_value(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id)]

    def leaks(texts) -> list[str]:
        return [text[max(0, m.start() - 80):m.end() + 40] for text in texts for m in hunted.finditer(str(text))]

    found = {
        "stdout/stderr": leaks(outputs),
        "log records before redaction": leaks(collect.lines),
        "exceptions": leaks(exceptions),
        "dagster events": leaks(dagster_texts),
        "database": _database_leaks(settings.database_url.get()),
    }
    assert collect.lines and dagster_texts
    assert {where: hit for where, hit in found.items() if hit} == {}
