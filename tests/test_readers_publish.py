"""Readers are never hurt by a publish (issue 13, findings 1-4).

Real reader sessions in threads, logged in as the reader role, run the queries of
docs/backstage.md and docs/analysts.md in READ COMMITTED and REPEATABLE READ while the
pipeline publishes again and again; another reader idles in an open transaction. Every
reader error, every empty published table a reader sees and every moment a reader waits
on a lock is counted: all must stay 0. The figures are printed for the issue note.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import date
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from dora_pipeline.models import PublishError, build_all, load_models, model_parameters, publish
from dora_pipeline.pipeline import build_and_publish, extract_partition
from dora_pipeline.sources import get_source
from dora_pipeline.warehouse import Warehouse, as_user

from builders import AS_OF
from conftest import settings_with

DOCS = Path(__file__).resolve().parents[1] / "docs"
READER_PASSWORD = "reader-password-for-tests"
PUBLISHES = 6
# A generous bound on work that takes seconds, so a stall fails instead of hanging.
STALL_SECONDS = 180


def doc_queries() -> list[str]:
    """Every query (SQL block starting with select or with) of the docs Backstage and
    analysts copy from, as psycopg text; the install guide's role and table set-up
    blocks are an administrator's, not a reader's."""
    queries = []
    for name in ("backstage.md", "analysts.md"):
        for block in re.findall(
            r"```sql\n(.*?)```", (DOCS / name).read_text(encoding="utf-8"), re.S
        ):
            text = block.strip().rstrip(";").replace("%", "%%")
            if not re.match(r"(--[^\n]*\n\s*)*(select|with)\b", text, re.I):
                continue
            # One query takes a text array (the user's groups), the others one ref.
            queries.append(text.replace("$1::text[]", "array[%(ref)s]").replace("$1", "%(ref)s"))
    return queries


@pytest.fixture
def published(settings):
    """A synthetic organisation extracted, built and published once; the reader can log in."""
    warehouse = Warehouse(
        settings_with(
            settings,
            DORA_SYNTHETIC="true",
            DORA_SYNTHETIC_TEAMS="3",
            DORA_SYNTHETIC_SERVICES="6",
            DORA_SYNTHETIC_DAYS="10",
            DORA_SYNTHETIC_END="2025-03-10",
            DORA_READER_PASSWORD=READER_PASSWORD,
        )
    )
    warehouse.migrate()
    source = get_source("synthetic")
    for day in range(1, 11):
        extract_partition(warehouse, source, date(2025, 3, day))
    build_and_publish(warehouse, AS_OF)
    return warehouse


def reader_url(warehouse: Warehouse) -> str:
    return as_user(warehouse.url, warehouse.settings.reader_role) + f" password={READER_PASSWORD}"


def published_tables(warehouse: Warehouse) -> list[str]:
    """The published tables that hold rows (a small organisation has no improvement
    candidates): those must never read as empty."""
    with warehouse.connection() as conn:
        return [
            m.name
            for m in sorted(load_models().marts, key=lambda m: m.name)
            if conn.execute(
                sql.SQL("select exists (select from {})").format(
                    sql.Identifier("dora_metrics", m.name)
                )
            ).fetchone()[0]
        ]


def _finishes(work, within: float) -> bool:
    """Run ``work`` in a thread: whether it finished within ``within`` seconds (a publish
    stalled behind a reader's lock would never finish on its own). Errors are re-raised."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(within)
    if errors:
        raise errors[0]
    return not thread.is_alive()


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queries = 0
        self.errors: list[str] = []
        self.empty: list[str] = []
        self.max_seconds = 0.0

    def record(self, seconds: float) -> None:
        with self.lock:
            self.queries += 1
            self.max_seconds = max(self.max_seconds, seconds)


def _read_loop(
    url: str,
    isolation: psycopg.IsolationLevel,
    tables: list[str],
    ref: str,
    stop: threading.Event,
    tally: Tally,
) -> None:
    queries = doc_queries()
    counts = [
        sql.SQL("select count(*) from {}").format(sql.Identifier("dora_metrics", t)) for t in tables
    ]
    with psycopg.connect(url, autocommit=False) as conn:
        conn.isolation_level = isolation
        while not stop.is_set():
            try:
                with conn.transaction():
                    for query in queries:
                        started = time.monotonic()
                        conn.execute(query, {"ref": ref}).fetchall()
                        tally.record(time.monotonic() - started)
                    for table, statement in zip(tables, counts, strict=True):
                        started = time.monotonic()
                        (n,) = conn.execute(statement).fetchone()
                        tally.record(time.monotonic() - started)
                        if n == 0:
                            with tally.lock:
                                tally.empty.append(f"{isolation.name} {table}")
            except psycopg.Error as exc:
                with tally.lock:
                    tally.errors.append(f"{isolation.name}: {type(exc).__name__}: {exc}")


def _watch_lock_waits(
    admin_url: str, reader_role: str, stop: threading.Event, waits: list[str]
) -> None:
    """Samples pg_stat_activity: a reader session ever waiting on a lock is a failure."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        while not stop.is_set():
            for row in conn.execute(
                "select pid, wait_event, left(query, 60) from pg_stat_activity "
                "where usename = %s and wait_event_type = 'Lock'",
                (reader_role,),
            ):
                waits.append(repr(row))
            time.sleep(0.02)


@pytest.mark.slow  # six publishes, three rebuilds, under five reader sessions
def test_readers_never_error_wait_or_see_empty_tables_during_publishes(published, capsys):
    warehouse = published
    tables = published_tables(warehouse)
    url = reader_url(warehouse)
    with psycopg.connect(url) as conn:
        (ref,) = conn.execute(
            "select entity_ref from dora_metrics.service_metrics limit 1"
        ).fetchone()
    stop, tally, waits = threading.Event(), Tally(), []
    threads = [
        threading.Thread(target=_read_loop, args=(url, level, tables, ref, stop, tally))
        for level in (psycopg.IsolationLevel.READ_COMMITTED, psycopg.IsolationLevel.REPEATABLE_READ)
        * 2
    ]
    threads.append(
        threading.Thread(
            target=_watch_lock_waits,
            args=(warehouse.url, warehouse.settings.reader_role, stop, waits),
        )
    )
    # One more reader idles inside a transaction that has read every table: it must
    # neither stall the publishes nor lose its snapshot.
    idle = psycopg.connect(url)
    idle.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    before = {
        t: idle.execute(
            sql.SQL("select count(*) from {}").format(sql.Identifier("dora_metrics", t))
        ).fetchone()[0]
        for t in tables
    }
    for thread in threads:
        thread.start()
    started = time.monotonic()

    def publishes() -> None:
        graph = load_models()
        for i in range(PUBLISHES):
            with warehouse.connection() as conn:
                if i % 2:  # half of them after a real rebuild, so the rows really change
                    build_all(conn, graph, model_parameters(warehouse.settings, AS_OF))
                publish(conn, graph.marts, warehouse.settings.reader_role)

    try:
        finished = _finishes(publishes, within=STALL_SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    publish_seconds = time.monotonic() - started
    if not finished:
        idle.close()  # lets the stalled publisher go on, so the test can end
    assert finished, "the publishes stalled behind the readers"
    after = {
        t: idle.execute(
            sql.SQL("select count(*) from {}").format(sql.Identifier("dora_metrics", t))
        ).fetchone()[0]
        for t in tables
    }
    idle.close()
    with capsys.disabled():
        print(
            f"\nreaders: {tally.queries} queries by 4 readers + 1 idle transaction during {PUBLISHES} "
            f"publishes ({publish_seconds:.1f}s): {len(tally.errors)} errors, {len(tally.empty)} empty "
            f"reads, {len(waits)} lock waits, slowest query {tally.max_seconds * 1000:.0f} ms"
        )
    assert tally.errors == []
    assert tally.empty == []
    assert waits == []
    assert tally.queries > len(doc_queries()) * 4
    assert len(tables) >= 9
    assert after == before  # the idle snapshot still sees the previous rows
    assert all(before.values())


def test_an_open_snapshot_keeps_the_previous_rows(published):
    warehouse = published
    with psycopg.connect(reader_url(warehouse)) as reader:
        reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        old = reader.execute(
            "select count(*), max(computed_at) from dora_metrics.service_metrics"
        ).fetchone()

        def republish() -> None:
            with warehouse.connection() as conn:
                conn.execute(
                    "update dora_marts.service_metrics set computed_at = computed_at + interval '1 day'"
                )
                conn.commit()
                publish(conn, load_models().marts, warehouse.settings.reader_role)

        if not _finishes(republish, within=STALL_SECONDS):
            reader.close()
            pytest.fail("the publish stalled behind a reader's open snapshot")
        assert (
            reader.execute(
                "select count(*), max(computed_at) from dora_metrics.service_metrics"
            ).fetchone()
            == old
        )
        reader.rollback()
        new = reader.execute(
            "select count(*), max(computed_at) from dora_metrics.service_metrics"
        ).fetchone()
        assert new[0] == old[0] and new[1] > old[1]


def test_publish_gives_up_with_a_clear_error_and_keeps_the_previous_tables(published):
    """Only a lock a reader cannot take (here an admin's) can hold the publish; it then
    retries, gives up, and says so; the published rows stay as they were."""
    warehouse = published
    with warehouse.connection() as conn:
        before = conn.execute(
            "select count(*), max(computed_at) from dora_metrics.team_metrics"
        ).fetchone()
        conn.execute(
            "update dora_marts.team_metrics set computed_at = computed_at + interval '1 day'"
        )
        conn.commit()
    with psycopg.connect(warehouse.url) as blocker:
        blocker.execute("lock table dora_metrics.team_metrics in access exclusive mode")
        with warehouse.connection() as conn, pytest.raises(PublishError) as excinfo:
            publish(
                conn,
                load_models().marts,
                warehouse.settings.reader_role,
                lock_timeout="100ms",
                attempts=3,
                backoff=0.05,
            )
        blocker.rollback()
    message = str(excinfo.value)
    assert "gave up after 3 attempts" in message and "unchanged" in message
    with warehouse.connection() as conn:
        assert (
            conn.execute(
                "select count(*), max(computed_at) from dora_metrics.team_metrics"
            ).fetchone()
            == before
        )


def test_a_mart_that_gains_changes_and_loses_columns_is_published_in_place(published):
    warehouse = published
    marts = load_models().marts
    with warehouse.connection() as conn:
        oid = conn.execute("select 'dora_metrics.benchmarks'::regclass::oid").fetchone()[0]
        conn.execute("alter table dora_marts.benchmarks add column note text default 'new'")
        conn.execute("alter table dora_marts.benchmarks alter column unit type varchar(40)")
        conn.execute("alter table dora_marts.benchmarks drop column source")
        conn.commit()
        counts = publish(conn, marts, warehouse.settings.reader_role)
        columns = dict(
            conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'dora_metrics' and table_name = 'benchmarks'"
            ).fetchall()
        )
        assert conn.execute("select 'dora_metrics.benchmarks'::regclass::oid").fetchone()[0] == oid
        assert (
            conn.execute(
                "select count(*) from dora_metrics.benchmarks where note = 'new'"
            ).fetchone()[0]
            == counts["benchmarks"]
            > 0
        )
    assert "source" not in columns and columns["unit"] == "character varying" and "note" in columns
    with psycopg.connect(reader_url(warehouse)) as reader:
        assert (
            reader.execute("select count(*) from dora_metrics.benchmarks").fetchone()[0]
            == counts["benchmarks"]
        )


def _hostile_reader_session(warehouse: Warehouse) -> psycopg.Connection:
    """The reader does everything issue 13 found it could do to the pipeline's locks."""
    reader = psycopg.connect(reader_url(warehouse), autocommit=True)
    for lock_id in (7_312_001, 7_312_002):
        assert reader.execute("select pg_try_advisory_lock(%s)", (lock_id,)).fetchone()[0]
    reader.execute("begin")
    reader.execute("select count(*) from dora_metrics.service_metrics")  # and idles
    return reader


def test_the_reader_role_cannot_stall_migrate_build_or_publish(published):
    warehouse = published
    reader = _hostile_reader_session(warehouse)
    try:
        done = threading.Event()

        def pipeline() -> None:
            warehouse.migrate()
            build_and_publish(warehouse, AS_OF)
            done.set()

        thread = threading.Thread(target=pipeline, daemon=True)
        thread.start()
        thread.join(timeout=120)
        assert done.is_set(), "the pipeline hung behind the reader's locks"
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("create temporary table t (x int)", psycopg.errors.InsufficientPrivilege),
        ("select lo_from_bytea(0, '\\x00')", psycopg.errors.InsufficientPrivilege),
        ("select lo_create(0)", psycopg.errors.InsufficientPrivilege),
        ("select * from dora_lib.pipeline_locks", psycopg.errors.InsufficientPrivilege),
    ],
    ids=["temp-table", "lo_from_bytea", "lo_create", "pipeline-locks"],
)
def test_the_reader_role_has_no_temp_tables_large_objects_or_pipeline_locks(
    published, statement, error
):
    with psycopg.connect(reader_url(published)) as reader, pytest.raises(error):
        reader.execute(statement)


def test_the_reader_role_gets_bounded_session_defaults(published):
    with psycopg.connect(reader_url(published)) as reader:
        shown = {
            name: reader.execute(sql.SQL("show {}").format(sql.Identifier(name))).fetchone()[0]
            for name in (
                "statement_timeout",
                "idle_in_transaction_session_timeout",
                "work_mem",
                "temp_file_limit",
            )
        }
    assert shown == {
        "statement_timeout": "5min",
        "idle_in_transaction_session_timeout": "10min",
        "work_mem": "16MB",
        "temp_file_limit": "1GB",
    }


def test_the_pipeline_keeps_its_temp_tables(published):
    """TEMP was taken from PUBLIC: the loader's temporary tables still work."""
    with published.connection() as conn:
        conn.execute("create temporary table still_allowed (x int)")
