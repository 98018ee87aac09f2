"""The warehouse under injected faults: a connection killed mid-load and mid-publish
(``pg_terminate_backend`` from another session), re-runs, backfills and concurrent
partitions.

The kills are made deterministic by a third session holding a lock the victim needs
next: the victim has already written part of its transaction and waits, provably
mid-load (or mid-publish), when it is terminated. The COPY kill needs no lock: a large
partition keeps the COPY streaming long enough to be caught in the act.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dora_pipeline.models import ModelError, build_all, load_models, model_parameters, publish
from dora_pipeline.pipeline import build_and_publish, extract_partition, run
from dora_pipeline.records import Deployment
from dora_pipeline.sources import get_source
from dora_pipeline.warehouse import Warehouse, WarehouseUnavailable
from dora_pipeline.warehouse.loader import load_partition

import faults
from builders import AS_OF, at, component, deploy, group, incident, pr, sha
from conftest import settings_with

module_warehouse, fresh_warehouse = faults.module_warehouse, faults.fresh_warehouse

DAY = date(2025, 3, 3)
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def _url(warehouse: Warehouse, **params) -> str:
    conninfo = conninfo_to_dict(warehouse.url)
    conninfo.update(params)
    return make_conninfo(**conninfo)


def _partition() -> list:
    return [
        group("t"), component("api", "t"), component("web", "t"),
        *[deploy("api", at(3, h / 2), sha(h), ext=f"dep-{h}") for h in range(1, 40)],
        *[pr("api", n, at(2, n / 4), at(3, n / 4), merge_sha=sha(n)) for n in range(1, 40)],
        *[incident(["api", "web"], at(3, h), at(3, h + 1), ext=f"inc-{h}") for h in range(1, 12)],
    ]


def _wait_for(conn, pid: int, condition: str, timeout: float = 15.0) -> None:
    """Until backend ``pid`` matches ``condition`` (SQL over pg_stat_activity)."""
    deadline = time.monotonic() + timeout
    query = sql.SQL("select 1 from pg_stat_activity where pid = %s and ({})").format(sql.SQL(condition))
    while conn.execute(query, (pid,)).fetchone() is None:
        assert time.monotonic() < deadline, f"backend {pid} never reached: {condition}"
        time.sleep(0.005)


class Victim(threading.Thread):
    """Runs ``work(conn)`` on its own connection and keeps what it raised."""

    def __init__(self, url: str, work) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url)
        self.pid = self.conn.info.backend_pid
        self.work, self.error = work, None

    def run(self) -> None:
        try:
            self.work(self.conn)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            self.error = exc
        finally:
            self.conn.close()


def _kill_while_locked(warehouse: Warehouse, lock_table: str, work,
                       application_name: str | None = None) -> BaseException | None:
    """Run ``work(conn)`` while ``lock_table`` is held by another session; once the
    victim waits for it, terminate the victim's backend, then release the lock. The
    victim is ``conn``'s backend, or the one named ``application_name`` that waits for a
    lock when ``work`` opens its own connections (a build has one per model it builds at
    once)."""
    with psycopg.connect(warehouse.url, autocommit=True) as admin, psycopg.connect(warehouse.url) as holder:
        holder.execute(sql.SQL("lock table {} in access exclusive mode").format(
            sql.Identifier(*lock_table.split("."))))
        victim = Victim(warehouse.url, work)
        victim.start()
        pid = victim.pid
        if application_name:
            deadline = time.monotonic() + 15
            while (row := admin.execute(
                    "select pid from pg_stat_activity where application_name = %s and wait_event_type = 'Lock'",
                    (application_name,),
            ).fetchone()) is None:
                assert time.monotonic() < deadline, f"no backend named {application_name} waits for a lock"
                time.sleep(0.005)
            pid = row[0]
        _wait_for(admin, pid, "wait_event_type = 'Lock'")
        assert admin.execute("select pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        victim.join(15)
        holder.rollback()
    assert not victim.is_alive()
    return victim.error


@pytest.fixture
def clean(fresh_warehouse):
    """The raw rows of a clean load of the partition (the tables are emptied again)."""
    with fresh_warehouse.connection() as conn:
        load_partition(conn, "test", DAY, _partition(), now=NOW)
        rows = faults.snapshot(conn)
        faults.truncate_raw(conn)
    assert rows["deployments"] and rows["incidents"] and rows["incident_components"]
    return rows


def test_connection_killed_mid_load_leaves_nothing_and_the_retry_lands_it_whole(fresh_warehouse, clean):
    with faults.inject("postgres: backend terminated mid-load"):
        # deployments and pull_requests are upserted first; the incidents wait for the lock
        error = _kill_while_locked(
            fresh_warehouse, "dora_raw.incidents",
            lambda conn: load_partition(conn, "test", DAY, _partition(), now=NOW))
        assert isinstance(error, psycopg.OperationalError), error
        assert "terminating connection due to administrator command" in str(error)
        with fresh_warehouse.connection() as conn:
            assert faults.raw_rows(conn) == 0, "half a partition landed"
            assert conn.execute("select count(*) from dora_raw.extract_log").fetchone()[0] == 0
            load_partition(conn, "test", DAY, _partition(), now=NOW)
            faults.assert_same_rows(clean, faults.snapshot(conn), "retry after the kill")


def test_a_lost_connection_is_reported_clearly_and_a_rerun_recovers(synthetic):
    synthetic.migrate()
    source = get_source("synthetic")
    victim = Warehouse(synthetic.settings, url=_url(synthetic, application_name="victim-extract"))
    with faults.inject("postgres: connection lost under extract_partition"):
        error = _kill_while_locked(synthetic, "dora_raw.incidents",
                                   lambda conn: extract_partition(victim, source, DAY),
                                   application_name="victim-extract")
        assert isinstance(error, WarehouseUnavailable), error
        message = str(error)
        assert message.startswith("lost the connection to the warehouse at ")
        assert "terminating connection due to administrator command" in message
        assert "nothing half-written remains: run it again" in message
        with synthetic.connection() as conn:
            assert faults.raw_rows(conn) == 0
        extract_partition(synthetic, source, DAY)
        with synthetic.connection() as conn:
            assert faults.raw_rows(conn) > 0


def test_killed_rerun_keeps_the_previous_landing_and_quarantine(fresh_warehouse, clean):
    bad = Deployment("test", "bad", "entity_ref", "component:default/api", "production", at(3), commit_sha="XYZ")
    with fresh_warehouse.connection() as conn:
        load_partition(conn, "test", DAY, [*_partition(), bad], now=NOW)
        before = faults.snapshot(conn)
    assert len(before["quarantine"]) == 1
    with faults.inject("postgres: backend terminated mid-re-run"):
        error = _kill_while_locked(
            fresh_warehouse, "dora_raw.quarantine",
            lambda conn: load_partition(conn, "test", DAY, _partition()[:5], now=NOW))
        assert isinstance(error, psycopg.OperationalError)
        with fresh_warehouse.connection() as conn:
            faults.assert_same_rows(before, faults.snapshot(conn), "previous landing")


@pytest.mark.slow
def test_connection_killed_during_copy_of_a_large_partition(fresh_warehouse):
    big = [deploy("api", NOW - timedelta(days=90, seconds=i), sha(i), ext=f"big-{i}") for i in range(1, 100_001)]
    with faults.inject("postgres: backend terminated during COPY"):
        with psycopg.connect(fresh_warehouse.url, autocommit=True) as admin:
            victim = Victim(fresh_warehouse.url, lambda conn: load_partition(conn, "test", DAY, big, now=NOW))
            victim.start()
            # a first landing COPYs straight into dora_raw.deployments (no staging table)
            _wait_for(admin, victim.pid, "state = 'active' and query ilike 'copy%%deployments%%'", 60)
            admin.execute("select pg_terminate_backend(%s)", (victim.pid,))
            victim.join(60)
        assert isinstance(victim.error, psycopg.OperationalError), victim.error
        with fresh_warehouse.connection() as conn:
            assert faults.raw_rows(conn) == 0
            result = load_partition(conn, "test", DAY, big, now=NOW)
            assert result.rows == {"deployments": len(big)}
            count = conn.execute("select count(*) from dora_raw.deployments").fetchone()[0]
            faults.assert_same_rows({"deployments": [len(big)]}, {"deployments": [count]}, "COPY retry")


class Reader(threading.Thread):
    """Queries every published table in a loop as a reader would; keeps every error and
    every empty answer."""

    def __init__(self, url: str, tables: list[str]) -> None:
        super().__init__(daemon=True)
        self.url, self.tables = url, tables
        self.stop, self.errors, self.empty, self.queries = threading.Event(), [], [], 0

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                for table in self.tables:
                    try:
                        rows = conn.execute(sql.SQL("select count(*) from {}").format(
                            sql.Identifier("dora_metrics", table))).fetchone()[0]
                    except psycopg.Error as exc:
                        self.errors.append(f"{table}: {exc}")
                        continue
                    self.queries += 1
                    if rows == 0:
                        self.empty.append(table)
                time.sleep(0.002)


@pytest.fixture
def published(warehouse, pg_server_url):
    """A published warehouse, a login role granted the reader role, and its URL."""
    with warehouse.connection() as conn:
        load_partition(conn, "test", DAY, _partition(), now=NOW)
    build_and_publish(warehouse, AS_OF)
    login = warehouse.settings.reader_role + "_login"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login in role {}").format(
            sql.Identifier(login), sql.Identifier(warehouse.settings.reader_role)))
    yield warehouse, _url(warehouse, user=login, password="")
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(login)))


# Tables whose every row set is non-empty for the partition above.
NON_EMPTY = ["service_metrics", "team_metrics", "benchmarks", "service_metrics_weekly", "team_metrics_weekly"]


def test_connection_killed_mid_publish_keeps_the_old_tables_readable_and_the_retry_publishes(published):
    warehouse, reader_url = published
    graph = load_models()
    marts = graph.marts
    with warehouse.connection() as conn:
        old = faults.snapshot(conn, "dora_metrics")
    # New facts, built into the private marts; only the publication is left to do.
    with warehouse.connection() as conn:
        load_partition(conn, "test", date(2025, 3, 20), [deploy("api", at(20), sha(999), ext="late")], now=NOW)
        build_all(conn, graph, model_parameters(warehouse.settings, AS_OF))
    reader = Reader(reader_url, NON_EMPTY)
    reader.start()
    try:
        with faults.inject("postgres: backend terminated mid-publish"):
            # every mart before the last is already dropped and re-created inside the
            # publish transaction when it waits for the last one
            error = _kill_while_locked(
                warehouse, f"dora_marts.{marts[-1].name}",
                lambda conn: publish(conn, marts, warehouse.settings.reader_role))
            assert isinstance(error, psycopg.OperationalError), error
            with warehouse.connection() as conn:
                faults.assert_same_rows(old, faults.snapshot(conn, "dora_metrics"), "published after the kill")
                publish(conn, marts, warehouse.settings.reader_role)  # the retry
                new = faults.snapshot(conn, "dora_metrics")
            assert new != old
            time.sleep(0.1)  # the reader reads the new tables too
    finally:
        reader.stop.set()
        reader.join(15)
    assert reader.queries > 0
    assert reader.errors == [], reader.errors[:3]
    assert reader.empty == []
    with psycopg.connect(reader_url) as conn:
        assert conn.execute(
            "select deployments from dora_metrics.service_metrics "
            "where entity_ref = 'component:default/api' and window_days = 30").fetchone() == (40,)


def test_connection_killed_mid_build_leaves_the_published_tables_alone(published):
    warehouse, reader_url = published
    victim_url = _url(warehouse, application_name="victim-build")
    with warehouse.connection() as conn:
        old = faults.snapshot(conn, "dora_metrics")
    reader = Reader(reader_url, NON_EMPTY)
    reader.start()
    try:
        with faults.inject("postgres: backend terminated mid-build"):
            error = _kill_while_locked(
                warehouse, "dora_raw.deployments",
                lambda conn: build_and_publish(Warehouse(warehouse.settings, url=victim_url), AS_OF),
                application_name="victim-build")
            # the model being built is named; what stopped it too
            assert isinstance(error, ModelError), error
            assert "terminating connection due to administrator command" in str(error)
            with warehouse.connection() as conn:
                faults.assert_same_rows(old, faults.snapshot(conn, "dora_metrics"), "published after the kill")
            build_and_publish(warehouse, AS_OF)
            with warehouse.connection() as conn:
                faults.assert_same_rows(old, faults.snapshot(conn, "dora_metrics"), "the retry")
    finally:
        reader.stop.set()
        reader.join(15)
    assert reader.errors == [] and reader.empty == [] and reader.queries > 0


@pytest.fixture
def synthetic(settings):
    return Warehouse(settings_with(settings, DORA_SYNTHETIC="true", DORA_SYNTHETIC_TEAMS="3",
                                   DORA_SYNTHETIC_SERVICES="6", DORA_SYNTHETIC_DAYS="10",
                                   DORA_SYNTHETIC_END="2025-03-10"))


SYNTHETIC_AS_OF = datetime(2025, 3, 11, tzinfo=UTC)


def _tables(warehouse) -> tuple[dict, dict]:
    with warehouse.connection() as conn:
        return faults.snapshot(conn, "dora_raw"), faults.snapshot(conn, "dora_metrics")


def test_the_same_partition_three_times_gives_identical_tables(synthetic):
    source = get_source("synthetic")
    runs = []
    for _ in range(3):
        run(synthetic, date(2025, 3, 4), date(2025, 3, 4), SYNTHETIC_AS_OF, [source])
        runs.append(_tables(synthetic))
    assert runs[0][0]["deployments"] and runs[0][1]["service_metrics"]
    assert runs[1] == runs[0]
    assert runs[2] == runs[0]


@pytest.mark.slow
def test_a_ten_day_backfill_equals_ten_single_days(synthetic):
    source = get_source("synthetic")
    run(synthetic, date(2025, 3, 1), date(2025, 3, 10), SYNTHETIC_AS_OF, [source])
    backfill = _tables(synthetic)
    with synthetic.connection() as conn:
        faults.truncate_raw(conn)
    for day in range(1, 11):
        run(synthetic, date(2025, 3, day), date(2025, 3, day), SYNTHETIC_AS_OF, [source])
    singles = _tables(synthetic)
    assert backfill[1]["service_metrics"] and backfill[0]["pull_requests"]
    assert singles[0] == backfill[0]
    assert singles[1] == backfill[1]


def _concurrently(*calls) -> list:
    errors, start = [], threading.Barrier(len(calls))

    def go(call):
        start.wait()
        try:
            call()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(c,), daemon=True) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a partition never finished: deadlock?"
    return errors


def test_concurrent_partitions_neither_deadlock_nor_duplicate(synthetic):
    synthetic.migrate()
    source = get_source("synthetic")
    days = [date(2025, 3, d) for d in range(1, 7)]
    for day in days:  # the reference: one after the other
        extract_partition(synthetic, source, day)
    sequential = _tables(synthetic)[0]
    with synthetic.connection() as conn:
        faults.truncate_raw(conn)
    with faults.inject("postgres: concurrent partitions"):
        # pairs of different days (both rewrite the catalog snapshot), then one day twice
        for a, b in [(days[0], days[1]), (days[2], days[3]), (days[4], days[5]), (days[0], days[0])]:
            errors = _concurrently(lambda a=a: extract_partition(synthetic, source, a),
                                   lambda b=b: extract_partition(synthetic, source, b))
            assert errors == []
        faults.assert_same_rows(sequential, _tables(synthetic)[0], "concurrent partitions")
