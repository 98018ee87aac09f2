"""Bad input: each bad record is quarantined (or the input refused) with a reason naming
the record and the field, and nothing else of the partition is lost."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
import requests
from psycopg import sql

from dora_pipeline.config import ConfigError, Settings
from dora_pipeline.pipeline import build_and_publish, extract_partition
from dora_pipeline.records import (
    CatalogEntity,
    Deployment,
    GroupMembership,
    Incident,
    PullRequest,
    Quarantined,
    SurveyResponse,
)
from dora_pipeline.sources.survey import SurveySource
from dora_pipeline.warehouse import Warehouse
from dora_pipeline.warehouse.loader import load_partition
from dora_pipeline.webhook.app import create_app, make_server
from dora_pipeline.webhook.events import sign

import faults
from builders import AS_OF, at, component, deploy, group, incident, pr, ref, service, sha
from conftest import settings_with

module_warehouse, fresh_warehouse = faults.module_warehouse, faults.fresh_warehouse

DAY = date(2025, 3, 3)
NOW = datetime(2025, 3, 4, 12, tzinfo=UTC)  # "now" for validation: the day after DAY
T = datetime(2025, 3, 3, 12, tzinfo=UTC)
NOT_UTF8 = b"caf\xe9 cr\xe8me".decode("utf-8", errors="surrogateescape")  # latin-1 bytes, read as UTF-8


def _survey(respondent: str, satisfaction: object, flow: object = 4) -> SurveyResponse:
    return SurveyResponse("test", "s1", respondent, "group:default/team-a", T, satisfaction, flow)


# (record, its key in the quarantine, the reason's start)
BAD = [
    (Incident("test", "naive", T.replace(tzinfo=None), (("name", "api"),)),
     "test:naive", "opened_at: has no time zone: 2025-03-03T12:00:00"),
    (Deployment("test", "future", "name", "api", "production", NOW + timedelta(days=3)),
     "test:future", "finished_at: is in the future: 2025-03-07"),
    (PullRequest("test", "acme/api", 11, T, first_review_at=NOW + timedelta(hours=2)),
     "acme/api#11", "first_review_at: is in the future"),
    (Incident("test", "backwards", T, (("name", "api"),), resolved_at=T - timedelta(minutes=1)),
     "test:backwards", "resolved_at: is before opened_at"),
    (PullRequest("test", "acme/api", 12, T, merged_at=T - timedelta(hours=1)),
     "acme/api#12", "merged_at: is before opened_at"),
    (Deployment("test", "sha", "name", "api", "production", T, commit_sha="not-a-sha!"),
     "test:sha", "commit_sha: is not a lower-case hex commit SHA: 'not-a-sha!'"),
    (Deployment("test", "sha-upper", "name", "api", "production", T, commit_sha="ABCDEF0123"),
     "test:sha-upper", "commit_sha: is not a lower-case hex commit SHA"),
    (PullRequest("test", "acme/api", 13, T, head_sha="g" * 40),
     "acme/api#13", "head_sha: is not a lower-case hex commit SHA"),
    (PullRequest("test", "acme/api", -5, T), "acme/api#-5", "number: is out of range: -5"),
    (PullRequest("test", "acme/api", 0, T), "acme/api#0", "number: is out of range: 0"),
    (PullRequest("test", "acme/api", 2**31, T), "acme/api#2147483648", "number: is out of range: 2147483648"),
    (PullRequest("test", "acme/api", 10**30, T), f"acme/api#{10**30}", "number: is out of range"),
    (PullRequest("test", "acme/api", "14", T), "acme/api#14", "number: is not an integer: '14'"),
    (_survey("r0", 0), "s1:r0", "satisfaction: must be an integer 1-5, got 0"),
    (_survey("r6", 6), "s1:r6", "satisfaction: must be an integer 1-5, got 6"),
    (_survey("r35", 3.5), "s1:r35", "satisfaction: must be an integer 1-5, got 3.5"),
    (_survey("rfive", "five"), "s1:rfive", "satisfaction: must be an integer 1-5, got 'five'"),
    (_survey("rtrue", True), "s1:rtrue", "satisfaction: must be an integer 1-5, got True"),
    (_survey("rflow", 4, None), "s1:rflow", "flow_state: must be an integer 1-5, got None"),
    (PullRequest("test", "acme/api", 15, T, title=NOT_UTF8),
     "acme/api#15", "title: is not valid UTF-8 text: 'caf\\udce9"),
    (PullRequest("test", "acme/api", 16, T, author="bob\x00"), "acme/api#16", "author: contains a NUL character"),
    (Incident("test", "nul", T, (("name", "api\x00"),)), "test:nul", "affected: contains a NUL character"),
    (CatalogEntity("test", "component:default/x", "component", "default", "x", annotations={"k": NOT_UTF8}),
     "component:default/x", "annotations: is not valid UTF-8 text"),
    (CatalogEntity("test", "component:default/payments api", "component", "default", "payments api"),
     "component:default/payments api", "entity_ref: is not a full lower-case entity ref"),
    (CatalogEntity("test", "component:default/Ünïcode", "component", "default", "Ünïcode"),
     "component:default/Ünïcode", "entity_ref: is not a full lower-case entity ref"),
    (CatalogEntity("test", "component:default/a;drop", "component", "default", "a;drop"),
     "component:default/a;drop", "entity_ref: is not a full lower-case entity ref"),
    (CatalogEntity("test", "component:default/api", "component", "default", "api", owner_ref="team-a"),
     "component:default/api", "owner_ref: is not a full lower-case entity ref kind:namespace/name: 'team-a'"),
    (GroupMembership("test", "group:default/team-a", "user:default/jane doe"),
     "group:default/team-a<-user:default/jane doe", "user_ref: is not a full lower-case entity ref"),
    (Deployment("test", "ref", "entity_ref", "component:default/../../etc", "production", T),
     "test:ref", "service_key: is not a full lower-case entity ref"),
    (Incident("test", "noservice", T, ()), "test:noservice", "affected: names no service"),
]


def _good() -> list:
    return [
        deploy("api", T, sha(1), ext="good-deploy"),
        pr("api", 1, T - timedelta(hours=2), T - timedelta(hours=1)),
        incident(["api"], T, T + timedelta(hours=1), ext="good-incident"),
        SurveyResponse("test", "s1", "ok", "group:default/team-a", T, 4, 5, blockers_text="flaky CI"),
        component("web", "team-a"),
    ]


def test_each_bad_record_is_quarantined_naming_record_and_field_and_nothing_else_is_lost(fresh_warehouse):
    with fresh_warehouse.connection() as conn:
        load_partition(conn, "test", DAY, _good(), now=NOW)
        clean = faults.snapshot(conn)
        faults.truncate_raw(conn)
        bad = [record for record, _, _ in BAD]
        mixed = [x for pair in zip(bad, _good() * 10, strict=False) for x in pair] + bad[len(_good()) * 10:]
        with faults.inject("bad input: every bad record in one partition"):
            result = load_partition(conn, "test", DAY, mixed + _good(), now=NOW)
            reasons = dict(conn.execute("select record_key, reason from dora_raw.quarantine").fetchall())
            assert result.quarantined == len(BAD) == len(reasons)
            for _, key, reason in BAD:
                assert key in reasons, f"{key} was not quarantined"
                assert reasons[key].startswith(reason), (key, reasons[key])
            landed = faults.snapshot(conn)
            faults.assert_same_rows({t: r for t, r in clean.items() if t not in ("quarantine", "extract_log")},
                                    {t: r for t, r in landed.items() if t not in ("quarantine", "extract_log")},
                                    "good records beside bad ones")


def test_non_utf8_bytes_and_nuls_in_quarantine_payloads_are_kept_readable(fresh_warehouse):
    raw = b'{"id": "P1", "title": "caf\xe9 \x00 \xff\xfe"}'
    with fresh_warehouse.connection() as conn, faults.inject("bad input: non-UTF-8 bytes payload"):
        load_partition(conn, "test", DAY, [
            Quarantined("test", "incidents", "P1", "payload: not UTF-8", raw),
            Quarantined("test", "incidents", NOT_UTF8, f"title: {NOT_UTF8}", {"title": NOT_UTF8}),
            PullRequest("test", "acme/api", 15, T, title=NOT_UTF8),
            deploy("api", T, ext="good"),
        ], now=NOW)
        rows = conn.execute("select record_key, reason, payload from dora_raw.quarantine order by 1").fetchall()
        assert ("P1", "payload: not UTF-8", '{"id": "P1", "title": "caf\\xe9 \\u0000 \\xff\\xfe"}') in rows
        assert ("caf\\udce9 cr\\udce8me", "title: caf\\udce9 cr\\udce8me",
                '{"title": "caf\\udce9 cr\\udce8me"}') in rows
        assert any(key == "acme/api#15" and "caf\\udce9" in payload for key, _, payload in rows)
        assert conn.execute("select external_id from dora_raw.deployments").fetchall() == [("good",)]


def test_duplicate_deliveries_are_stored_once(fresh_warehouse):
    first = deploy("api", T, sha(7), ext="dup")
    again = deploy("api", T, sha(7), ext="dup")
    survey = SurveyResponse("test", "s1", "resp", "group:default/team-a", T, 4, 4)
    with fresh_warehouse.connection() as conn, faults.inject("bad input: duplicate deliveries"):
        load_partition(conn, "test", DAY, [first, again, survey, survey, incident(["api"], T, ext="i")], now=NOW)
        load_partition(conn, "test", DAY, [again, survey, incident(["api"], T, ext="i")], now=NOW)
        # the same incident delivered again in a later day's extract (still open, re-read)
        load_partition(conn, "test", DAY + timedelta(days=1), [incident(["api"], T, ext="i")], now=NOW)
        counts = {t: conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier("dora_raw", t))
                                  ).fetchone()[0]
                  for t in ("deployments", "survey_responses", "incidents", "incident_components")}
        assert counts == {"deployments": 1, "survey_responses": 1, "incidents": 1, "incident_components": 1}


@pytest.fixture
def published(fresh_warehouse):
    def publish(records: list) -> Warehouse:
        with fresh_warehouse.connection() as conn:
            load_partition(conn, "test", DAY, [group("team-a"), component("api", "team-a"), *records],
                           now=datetime(2025, 6, 1, tzinfo=UTC))
        build_and_publish(fresh_warehouse, AS_OF)
        return fresh_warehouse
    return publish


def test_unknown_environments_are_stored_but_are_not_production(published):
    wh = published([deploy("api", at(3), env="production"), deploy("api", at(4), env="qa-7"),
                    deploy("api", at(5), env="PROD-EU"), deploy("api", at(6), env="prod ; drop")])
    with wh.connection() as conn:
        stored = {r[0] for r in conn.execute("select environment from dora_raw.deployments")}
    assert stored == {"production", "qa-7", "PROD-EU", "prod ; drop"}
    assert service(wh, "api")["deployments"] == 1


def test_unknown_components_get_a_fallback_ref_counted_in_data_quality(published):
    odd = Deployment("test", "odd", "argocd_app", "Payments API; DROP TABLE x", "production", at(5))
    wh = published([deploy("api", at(3)),
                    Deployment("test", "m1", "github_repo", "acme/mystery-svc", "production", at(4)), odd])
    assert service(wh, "mystery-svc")["deployments"] == 1
    assert service(wh, "payments-api-drop-table-x")["owner_ref"] is None
    with wh.connection() as conn:
        unmapped = conn.execute(
            "select value, detail from dora_metrics.data_quality where source = 'test' and check_name = 'unmapped'"
        ).fetchone()
        per_component = dict(conn.execute(
            "select entity_ref, value from dora_metrics.data_quality where check_name = 'unmapped_component'"))
    assert unmapped[0] == 2 and unmapped[1].startswith("2 services without a catalog entry")
    assert per_component == {ref("mystery-svc"): 1, ref("payments-api-drop-table-x"): 1}


SQLISH = [
    "Robert'); DROP TABLE dora_raw.deployments; --",
    "x' OR '1'='1",
    "$$; select pg_sleep(10); $$",
    "\\'; truncate dora_raw.incidents; --",
    "%s %(name)s {0} :param",
]


def test_strings_that_look_like_sql_are_stored_verbatim(published, fresh_warehouse):
    records = [
        PullRequest("test", "acme/api", n, at(2), merged_at=at(3), title=text, author=text, base_branch=text)
        for n, text in enumerate(SQLISH, start=1)
    ] + [
        # survey ids and environments start with a letter or digit (records.IDENTIFIER_RE)
        Deployment("test", text, "name", text, f"env {text}", at(4)) for text in SQLISH
    ] + [
        Incident("test", f"i-{n}", at(5), (("name", text),), title=text) for n, text in enumerate(SQLISH)
    ] + [
        SurveyResponse("test", f"s {text}", f"r{n}", "group:default/team-a", at(5), 3, 3, blockers_text=text)
        for n, text in enumerate(SQLISH)
    ] + [
        CatalogEntity("test", "component:default/web", "component", "default", "web", title=SQLISH[0],
                      owner_ref="group:default/team-a", annotations={SQLISH[1]: SQLISH[2]}),
    ]
    with faults.inject("bad input: SQL-looking strings"):
        wh = published(records)
        # also through the one setting that reaches SQL as text
        build_and_publish(Warehouse(settings_with(wh.settings, DORA_PRODUCTION_ENVIRONMENTS="^prod$|" + SQLISH[1])),
                          AS_OF)
        with wh.connection() as conn:
            titles = {r[0] for r in conn.execute("select title from dora_raw.pull_requests")}
            envs = {r[0] for r in conn.execute("select environment from dora_raw.deployments")}
            blockers = {r[0] for r in conn.execute("select blockers_text from dora_raw.survey_responses")}
            surveys = {r[0] for r in conn.execute("select survey_id from dora_raw.survey_responses")}
            catalog = conn.execute("select title, annotations from dora_raw.catalog_entities "
                                   "where entity_ref = 'component:default/web'").fetchone()
            keys = {r[0] for r in conn.execute("select service_key from dora_raw.incident_components")}
            tables = {r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'dora_raw'")}
            assert conn.execute("select count(*) from dora_raw.quarantine").fetchone()[0] == 0
    assert titles == blockers == keys == set(SQLISH)
    assert envs == {f"env {t}" for t in SQLISH} and surveys == {f"s {t}" for t in SQLISH}
    assert catalog == (SQLISH[0], {SQLISH[1]: SQLISH[2]})
    assert {"deployments", "incidents", "pull_requests", "survey_responses"} <= tables


def test_names_that_reach_sql_as_identifiers_are_refused_in_configuration():
    for name, value in [("DORA_READER_ROLE", 'reader"; drop role postgres; --'),
                        ("DORA_READER_ROLE", "x y"),
                        ("SURVEY_TABLE", "responses; drop table x"),
                        ("SURVEY_TABLE", 'a."b"')]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DORA_PARTITIONS_START", "2025-02-30", "DORA_PARTITIONS_START must be a date YYYY-MM-DD, got '2025-02-30'"),
        ("DORA_PARTITIONS_START", "2025-1-01", "DORA_PARTITIONS_START must be a date"),
        ("DORA_SYNTHETIC_END", "2025-13-01", "DORA_SYNTHETIC_END must be a date YYYY-MM-DD, got '2025-13-01'"),
        ("DORA_SYNTHETIC_END", "yesterday", "DORA_SYNTHETIC_END must be a date"),
        ("DORA_RULE_CHANGE_FAILURE_PCT", "150", "DORA_RULE_CHANGE_FAILURE_PCT must be a percentage between 0 and 100"),
        ("DORA_RULE_LEAD_TIME_COVERAGE_PCT", "101", "DORA_RULE_LEAD_TIME_COVERAGE_PCT must be a percentage"),
        ("DORA_RULE_SURVEY_RESPONSE_PCT", "1000", "DORA_RULE_SURVEY_RESPONSE_PCT must be a percentage"),
        ("SURVEY_DATABASE_URL", "postgresql://u:p@ss@host/db", "SURVEY_DATABASE_URL has an unencoded '@'"),
        ("SURVEY_DATABASE_URL", "host=h password=Secret 'x", "SURVEY_DATABASE_URL is not a valid connection string"),
    ],
)
def test_dates_percentages_and_the_survey_url_are_checked_when_read(name, value, message):
    """Caught with the variable's name at start, not as a crash deep in a run (an
    impossible date in the Dagster partitions, a rule that can never fire, a survey URL
    that fails at its first connection); a URL's message never quotes it."""
    with pytest.raises(ConfigError) as excinfo:
        Settings.from_env({name: value})
    assert str(excinfo.value).startswith(message)
    if name == "SURVEY_DATABASE_URL":
        assert "p@ss" not in str(excinfo.value) and "Secret" not in str(excinfo.value)


def test_valid_dates_and_percentages_are_kept():
    settings = Settings.from_env(
        {"DORA_PARTITIONS_START": "2024-02-29", "DORA_SYNTHETIC_END": "2025-12-31",
         "DORA_RULE_CHANGE_FAILURE_PCT": "100", "SURVEY_DATABASE_URL": "postgresql://u:p%40ss@host/db"}
    )
    assert (settings.partitions_start, settings.synthetic_end, settings.rule_change_failure_pct) == (
        "2024-02-29", "2025-12-31", 100.0)
    assert settings.survey_database_url.get() == "postgresql://u:p%40ss@host/db"


def test_survey_scores_from_a_csv_export_are_quarantined_with_the_answer(fresh_warehouse, tmp_path):
    (tmp_path / "export.csv").write_text(
        "user_ref,group_ref,survey_id,submitted_at,satisfaction,flow_state,blockers_text\n"
        "user:default/a,team-a,q1,2025-03-03T09:00:00Z,0,3,\n"
        "user:default/b,team-a,q1,2025-03-03T09:01:00Z,6,3,\n"
        "user:default/c,team-a,q1,2025-03-03T09:02:00Z,3.5,3,\n"
        "user:default/d,team-a,q1,2025-03-03T09:03:00Z,five,3,\n"
        "user:default/e,team-a,q1,2025-03-03T09:04:00Z,4,4,all good\n"
        "user:default/f,team-a,q1,2025-03-03T09:05:00Z, 5 ,2,\n",
        encoding="utf-8",
    )
    wh = Warehouse(settings_with(fresh_warehouse.settings, SURVEY_CSV_DIR=str(tmp_path)))
    with faults.inject("bad input: survey scores 0/6/3.5/five from CSV"):
        result = extract_partition(wh, SurveySource(), DAY)
        with wh.connection() as conn:
            reasons = sorted(r[0] for r in conn.execute("select reason from dora_raw.quarantine"))
            landed = conn.execute("select satisfaction, flow_state from dora_raw.survey_responses order by 1").fetchall()
            payloads = " ".join(r[0] for r in conn.execute("select payload from dora_raw.quarantine"))
    assert (result.rows, result.quarantined) == ({"survey_responses": 2}, 4)
    assert reasons == ["satisfaction: must be an integer 1-5, got '3.5'",
                       "satisfaction: must be an integer 1-5, got 'five'",
                       "satisfaction: must be an integer 1-5, got 0",
                       "satisfaction: must be an integer 1-5, got 6"]
    assert landed == [(4, 4), (5, 2)]
    assert "user:default/" not in payloads  # the respondent is pseudonymised before quarantine too


def test_a_survey_export_that_is_not_utf8_is_quarantined_whole_naming_the_file(fresh_warehouse, tmp_path):
    (tmp_path / "latin1.csv").write_bytes(
        b"user_ref,group_ref,survey_id,submitted_at,satisfaction,flow_state,blockers_text\n"
        b"user:default/a,team-a,q1,2025-03-03T09:00:00Z,4,4,caf\xe9\n")
    wh = Warehouse(settings_with(fresh_warehouse.settings, SURVEY_CSV_DIR=str(tmp_path)))
    with faults.inject("bad input: non-UTF-8 survey export"):
        result = extract_partition(wh, SurveySource(), DAY)
        with wh.connection() as conn:
            reasons = [r[0] for r in conn.execute("select reason from dora_raw.quarantine")]
            assert conn.execute("select count(*) from dora_raw.survey_responses").fetchone()[0] == 0
    assert result.quarantined == 1
    assert reasons[0].startswith("file: latin1.csv is not UTF-8: byte 0xe9 at offset 133 (line 2)")


SECRET = "bad-input-webhook-secret-0123456789"


@pytest.fixture
def receiver(fresh_warehouse):
    """The CI deploy receiver with its default body limit (64 KiB)."""
    settings = settings_with(fresh_warehouse.settings, DORA_WEBHOOK_SECRET=SECRET)
    assert settings.webhook_max_body_bytes == 65536
    server = make_server(create_app(settings, fresh_warehouse.url), "127.0.0.1", 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield sock.getsockname()
    server.should_exit = True
    thread.join(10)


def test_a_ten_megabyte_webhook_body_is_refused_with_413(receiver, fresh_warehouse):
    host, port = receiver
    body = b'{"delivery_id": "huge", "padding": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    with faults.inject("bad input: 10 MB webhook body"):
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(b"POST /v1/deployments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"X-Hub-Signature-256: " + sign(SECRET, body).encode() +
                         b"\r\nContent-Length: %d\r\n\r\n" % len(body))
            try:
                for start in range(0, len(body), 1 << 16):
                    conn.sendall(body[start:start + (1 << 16)])
            except OSError:
                pass  # the receiver answered and closed without reading 10 MB
            answer = conn.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"body larger than 65536 bytes" in answer
        # The receiver still serves, and nothing of the huge body was stored.
        ok = b'{"delivery_id": "ok-1", "component": "payments-api", "environment": "production", ' \
             b'"commit_sha": "0123456789abcdef0123456789abcdef01234567", ' \
             b'"finished_at": "2025-03-03T10:00:00Z", "status": "success"}'
        response = requests.post(f"http://{host}:{port}/v1/deployments", data=ok, timeout=10,
                                 headers={"X-Hub-Signature-256": sign(SECRET, ok)})
        assert response.status_code == 202, response.text
        with fresh_warehouse.connection() as conn:
            assert conn.execute("select delivery_id from dora_raw.webhook_inbox").fetchall() == [("ok-1",)]


# Places that build SQL text by formatting, each reviewed: what they interpolate is not data.
REVIEWED_SQL_FORMATTING = {
    ("tables.py", "print_tables"): "column names from the module's _COLUMNS constant",
    ("assets.py", "_organisation_medians"): "column names from the module's _MEASURES constant",
    ("assets.py", "_component_medians"): "column names from the module's _MEASURES constant",
    ("loader.py", "_copy_rows"): "a literal COPY option",
    ("engine.py", "_build_full"): "the model's SELECT, read from sql_models/ in the repository",
}


def test_sql_text_is_never_formatted_from_data():
    """Every execute/copy/sql.SQL call whose SQL is an f-string, a concatenation, a %
    or .format() of a literal is one of the reviewed places above; values are always
    parameters and identifiers go through sql.Identifier."""
    import ast
    from pathlib import Path

    import dora_pipeline

    found = set()
    root = Path(dora_pipeline.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
            for node in ast.walk(function):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("execute", "executemany", "copy", "SQL") and node.args):
                    continue
                text = node.args[0]
                formatted = (isinstance(text, ast.JoinedStr)
                             or (isinstance(text, ast.BinOp) and isinstance(text.op, ast.Mod | ast.Add))
                             or (isinstance(text, ast.Call) and isinstance(text.func, ast.Attribute)
                                 and text.func.attr == "format" and isinstance(text.func.value, ast.Constant)))
                if formatted:
                    found.add((path.name, function.name))
    assert found - set(REVIEWED_SQL_FORMATTING) == set(), "SQL text formatted in new places: review them"
