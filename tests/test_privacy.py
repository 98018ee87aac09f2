"""Respondent pseudonyms are keyed (HMAC with DORA_PSEUDONYM_KEY), and the reader role
reaches nothing beyond the published aggregates.

k-anonymity of the published survey tables is tested in test_space_privacy.py; the
reader's basic grants in test_publish_and_roles.py. Here: what those leave open.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from datetime import date

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dora_pipeline.pipeline import build_and_publish, extract_partition
from dora_pipeline.privacy import pseudonym_key, pseudonymise
from dora_pipeline.sources.survey import SurveySource
from dora_pipeline.warehouse import Warehouse

import faults
from builders import at, component, deploy, group, load
from conftest import settings_with

module_warehouse = faults.module_warehouse

USERS = ["user:default/jane", "user:default/kim", "user:platform/lee", "user:default/max"]


def _unkeyed_hashes(ref: str) -> set[str]:
    """What someone holding the user refs but not the key could compute."""
    out = set()
    for variant in {ref, ref.lower(), ref.split("/", 1)[1], ref.encode().hex()}:
        for name in ("sha256", "sha1", "md5", "sha512", "blake2b"):
            digest = hashlib.new(name, variant.encode()).hexdigest()
            out |= {digest, digest[:32]}
        out |= {hmac.new(b"", variant.encode(), hashlib.sha256).hexdigest()[:32]}
    return out


def test_pseudonyms_are_hmac_sha256_keyed_with_the_pseudonym_key():
    key = b"SENTINEL-pseudonym-key"
    for ref in USERS:
        expected = hmac.new(key, ref.encode(), hashlib.sha256).hexdigest()[:32]
        assert pseudonymise(ref, key) == expected
        # the same person however the ref is spelled
        assert pseudonymise(f"  {ref.upper()} ", key) == expected
        assert pseudonymise(ref, b"another-key") != expected
        assert expected not in _unkeyed_hashes(ref)
    assert len({pseudonymise(ref, key) for ref in USERS}) == len(USERS)


def test_the_key_comes_from_the_setting_else_a_private_file_created_once(settings, tmp_path, caplog):
    assert pseudonym_key(settings_with(settings, DORA_PSEUDONYM_KEY="from-the-env")) == b"from-the-env"
    home = tmp_path / "fresh-home"
    unset = settings_with(settings, DORA_PSEUDONYM_KEY="", DORA_HOME=str(home))
    with caplog.at_level(logging.WARNING, logger="dora_pipeline.privacy"):
        first = pseudonym_key(unset)
    assert "DORA_PSEUDONYM_KEY is not set; generated a key in" in caplog.text
    path = home / "pseudonym.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first) == 64 and first.decode() not in caplog.text
    assert pseudonym_key(unset) == first  # stable across runs: a respondent stays one person
    assert pseudonym_key(settings_with(settings, DORA_PSEUDONYM_KEY="", DORA_HOME=str(tmp_path / "other"))) != first


def _export(folder, rows: list[tuple[str, str]]) -> None:
    """One survey (q1) answered by ``rows`` of (user ref, submitted at)."""
    lines = ["user_ref,group_ref,survey_id,submitted_at,satisfaction,flow_state,blockers_text"]
    lines += [f"{user},team-a,q1,{submitted},4,3,blocked by {user}" for user, submitted in rows]
    folder.mkdir(exist_ok=True)
    (folder / "export.csv").write_text("\n".join(lines) + "\n")


def _respondents(warehouse, day: date) -> list[str]:
    with warehouse.connection() as conn:
        return [r[0] for r in conn.execute(
            "select respondent from dora_raw.survey_responses where partition_date = %s order by submitted_at",
            (day,))]


def test_survey_respondents_land_as_keyed_pseudonyms_and_rotating_the_key_splits_them(settings, tmp_path):
    day1, day2 = date(2025, 3, 3), date(2025, 3, 4)
    _export(tmp_path / "csv", [(u, f"2025-03-03T{9 + i:02d}:00:00Z") for i, u in enumerate(USERS)]
            + [(u, f"2025-03-04T{9 + i:02d}:00:00Z") for i, u in enumerate(USERS)])
    env = {"SURVEY_CSV_DIR": str(tmp_path / "csv")}
    keyed = Warehouse(settings_with(settings, DORA_PSEUDONYM_KEY="key-one", **env))
    extract_partition(keyed, SurveySource(), day1)
    stored = _respondents(keyed, day1)
    assert stored == [pseudonymise(u, b"key-one") for u in USERS]
    assert not set(stored) & set().union(*(_unkeyed_hashes(u) for u in USERS))
    with keyed.connection() as conn:
        everything = " ".join(str(row) for table in ("survey_responses", "quarantine", "extract_log")
                              for row in conn.execute(sql.SQL("select t::text from {} as t").format(
                                  sql.Identifier("dora_raw", table))))
    # The user ref never lands as an identity; free text keeps what the person typed (and
    # stays in dora_raw, never published).
    assert everything.count("user:default/jane") == everything.count("blocked by user:default/jane")

    # Rotation: the next day lands under a new key. Nobody is re-identified, but each
    # person now counts as two respondents of survey q1, one on each side of the rotation.
    rotated = Warehouse(settings_with(settings, DORA_PSEUDONYM_KEY="key-two", **env))
    extract_partition(rotated, SurveySource(), day2)
    assert _respondents(rotated, day2) == [pseudonymise(u, b"key-two") for u in USERS]
    with rotated.connection() as conn:
        assert conn.execute("select count(distinct respondent) from dora_raw.survey_responses "
                            "where survey_id = 'q1'").fetchone()[0] == 2 * len(USERS)


def _reader_url(warehouse, pg_server_url) -> tuple[str, str]:
    login = warehouse.settings.reader_role + "_priv"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login in role {}").format(
            sql.Identifier(login), sql.Identifier(warehouse.settings.reader_role)))
    params = conninfo_to_dict(warehouse.url)
    params["user"] = login
    params.pop("password", None)
    return login, make_conninfo(**params)


@pytest.fixture(scope="module")
def reader(module_warehouse, pg_server_url):
    """The URL of a login granted the reader role, on a published warehouse (one per module)."""
    load(module_warehouse, [group("t"), component("api", "t"), deploy("api", at(3))])
    build_and_publish(module_warehouse, at(31, 0))
    login, url = _reader_url(module_warehouse, pg_server_url)
    yield url
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(login)))


DENIED = [
    "select * from dora_raw.quarantine",
    "select * from dora_raw.extract_log",
    "select * from dora_raw.webhook_inbox",
    "select * from dora_raw.pull_requests",
    "select * from dora_raw.catalog_entities",
    "select * from dora_raw.group_memberships",
    "select * from dora_lib.schema_migrations",
    "select * from pg_authid",
    "select pg_read_file('postgresql.conf')",
    "select pg_ls_dir('.')",
    "select lo_import('/etc/passwd')",
    "copy (select 1) to program 'true'",
    "create table public.mine (a int)",
    "create schema mine",
    "set role postgres",
    "alter role current_user createrole",
]


@pytest.mark.parametrize("statement", DENIED)
def test_the_reader_cannot_reach_raw_data_files_or_other_roles(reader, statement):
    with psycopg.connect(reader, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_the_reader_sees_no_one_elses_queries_nor_stops_them_nor_finds_definer_functions(reader, module_warehouse):
    with module_warehouse.connection() as pipeline:
        pipeline.execute("select 'SENTINEL-visible-query', pg_sleep(0)")
        with psycopg.connect(reader, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select pg_terminate_backend(%s)", (pipeline.info.backend_pid,))
            texts = [r[0] for r in conn.execute(
                "select query from pg_stat_activity where usename is distinct from current_user")]
            assert not any("SENTINEL" in (t or "") for t in texts)
            definers = conn.execute(
                "select n.nspname || '.' || p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
                "where p.prosecdef and n.nspname not in ('pg_catalog', 'information_schema')").fetchall()
            assert definers == []
            # and what it may read, it reads
            assert conn.execute("select count(*) from dora_metrics.service_metrics").fetchone()[0] > 0
