"""The embedded warehouse under DORA_HOME: stopped between runs, or DORA_HOME moved.

Each run goes through the command line (``dora_pipeline.cli.main``, in this process,
like Dagster's long-lived code server, and once as a subprocess), with DORA_HOME in a
temporary folder and no DORA_DATABASE_URL, so the embedded server is the warehouse.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from dora_pipeline.cli import main
from dora_pipeline.config import Settings
from dora_pipeline.warehouse import Warehouse, WarehouseUnavailable, stop_embedded

import faults

pytestmark = pytest.mark.slow  # each test starts (and initialises) its own PostgreSQL

RUN = ["run", "--start", "2025-03-04", "--end", "2025-03-05", "--source", "synthetic"]
ENV = {"DORA_SYNTHETIC": "true", "DORA_SYNTHETIC_TEAMS": "2", "DORA_SYNTHETIC_SERVICES": "4",
       "DORA_SYNTHETIC_DAYS": "5", "DORA_SYNTHETIC_END": "2025-03-05",
       "DORA_PSEUDONYM_KEY": "test-pseudonym-key"}


@pytest.fixture
def tmp_path():
    """Not pytest's tmp_path: the server runs as another user when the tests run as root,
    and every pytest session resets its base folder to mode 0700."""
    path = Path(tempfile.mkdtemp(prefix="dora-home-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """Point DORA_HOME at a folder (returned by ``use``); every server started under one
    of them is stopped at the end."""
    monkeypatch.delenv("DORA_DATABASE_URL", raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    used: list[Path] = []

    def use(home: Path) -> Settings:
        monkeypatch.setenv("DORA_HOME", str(home))
        used.append(home)
        return Settings.from_env()

    yield use
    for home in used:
        if home.exists():
            stop_embedded(Settings.from_env({"DORA_HOME": str(home)}))


def _raw(settings: Settings) -> dict:
    with Warehouse(settings).connection() as conn:
        return faults.snapshot(conn)


def test_server_stopped_between_runs(tmp_path, homes, capsys):
    settings = homes(tmp_path / "home")
    assert main(RUN) == 0
    before = _raw(settings)
    assert before["deployments"]
    stale = Warehouse(settings)
    stale.url  # noqa: B018 - resolved while the server runs, as a long-lived process does

    with faults.inject("embedded: server stopped between runs"):
        assert stop_embedded(settings)
        # A handle resolved before the stop names the server it cannot reach.
        with pytest.raises(WarehouseUnavailable) as raised:
            with stale.connection():
                pass
        assert str(raised.value).startswith("cannot connect to the warehouse at postgresql://postgres:")
        assert str(tmp_path / "home" / "pgdata") in str(raised.value)
        # The next run, in the same process (Dagster's code server), starts it again.
        capsys.readouterr()
        assert main(RUN) == 0, capsys.readouterr().err
        faults.assert_same_rows(before, _raw(settings), "after the restart")

    with faults.inject("embedded: server stopped, next run is a new process"):
        assert stop_embedded(settings)
        env = {**os.environ, "DORA_HOME": str(tmp_path / "home")}
        done = subprocess.run([sys.executable, "-m", "dora_pipeline.cli", *RUN], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        faults.assert_same_rows(before, _raw(settings), "after the restart")


def test_dora_home_moved(tmp_path, homes, capsys):
    settings = homes(tmp_path / "home")
    assert main(RUN) == 0
    before = _raw(settings)
    with faults.inject("embedded: DORA_HOME moved while the server runs"):
        shutil.move(tmp_path / "home", tmp_path / "moved")
        moved = homes(tmp_path / "moved")
        capsys.readouterr()
        assert main(RUN) == 3
        err = capsys.readouterr().err
        assert f"the embedded PostgreSQL of {tmp_path / 'moved' / 'pgdata'} runs but cannot be reached" in err
        assert "Was DORA_HOME moved while the server ran? Stop it with `dora-pipeline db stop`" in err
        assert "Traceback" not in err
        # Doing what the message says recovers, with every row still there.
        assert main(["db", "stop"]) == 0
        assert "stopped" in capsys.readouterr().out
        _wait_until_reaped(tmp_path / "moved" / "pgdata")
        assert main(RUN) == 0
        faults.assert_same_rows(before, _raw(moved), "after the move")

    with faults.inject("embedded: DORA_HOME moved while the server is stopped"):
        assert stop_embedded(moved)
        shutil.move(tmp_path / "moved", tmp_path / "again")
        again = homes(tmp_path / "again")
        assert main(RUN) == 0
        faults.assert_same_rows(before, _raw(again), "at the new DORA_HOME")
        # The old path now starts an empty warehouse, and says so.
        homes(tmp_path / "moved")
        capsys.readouterr()
        assert main(["db", "url"]) == 0
        err = capsys.readouterr().err
        assert f"no warehouse under {tmp_path / 'moved' / 'pgdata'} yet: creating a new, empty one" in err
        assert "if DORA_HOME was moved, point DORA_HOME at its new place" in err


def _wait_until_reaped(pgdata: Path) -> None:
    """The server moved under its feet cannot remove its socket lock file (it tries the
    old path), and PostgreSQL only ignores a stale one once the old postmaster is gone.
    Where PID 1 reaps orphans lazily (this test VM), it lingers as a zombie for a moment."""
    lock = pgdata / ".s.PGSQL.5432.lock"
    if not lock.exists():
        return
    pid = int(lock.read_text().split()[0])
    deadline = time.monotonic() + 60
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.2)


def test_a_crash_empties_unlogged_build_tables_and_a_partial_build_refuses_them(tmp_path, homes, capsys):
    """Build tables are UNLOGGED (no WAL): crash recovery empties them. A mart built on its
    own afterwards (a single asset materialised in Dagster) must refuse the emptied
    upstream instead of publishing zeros; a full run rebuilds everything."""
    import signal
    from datetime import UTC, datetime

    from dora_pipeline.models import ModelError, build_model, load_models, model_parameters

    settings = homes(tmp_path / "home")
    assert main(RUN) == 0
    warehouse = Warehouse(settings)
    with warehouse.connection() as conn:
        published = conn.execute("select count(*) from dora_metrics.service_metrics").fetchone()[0]
        victim = conn.execute("select pg_backend_pid()").fetchone()[0]
        with faults.inject("postgres: a backend killed with SIGKILL (crash recovery)"):
            os.kill(victim, signal.SIGKILL)
            time.sleep(0.5)
    deadline = time.monotonic() + 60
    while True:
        try:
            with warehouse.connection() as conn:
                conn.execute("select 1")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    mart = load_models().models["dora_marts.service_metrics"]
    with warehouse.connection() as conn:
        assert conn.execute("select count(*) from dora_intermediate.int_components").fetchone()[0] == 0
        # An incremental model's table is unlogged too: the next run rebuilds it in full.
        assert conn.execute("select count(*) from dora_intermediate.int_subject_period_metrics").fetchone()[0] == 0
        weekly = conn.execute("select count(*) from dora_metrics.service_metrics_weekly").fetchone()[0]
        with pytest.raises(ModelError, match=r"marts/service_metrics.sql: upstream .*int_components.* emptied by a server restart"):
            build_model(conn, mart, model_parameters(settings, datetime(2025, 3, 6, tzinfo=UTC)))
        conn.rollback()
        # What readers see is untouched (published tables are logged).
        assert conn.execute("select count(*) from dora_metrics.service_metrics").fetchone()[0] == published
    capsys.readouterr()
    assert main(RUN) == 0, capsys.readouterr().err
    with warehouse.connection() as conn:
        assert conn.execute("select count(*) from dora_metrics.service_metrics").fetchone()[0] == published
        assert conn.execute("select count(*) from dora_metrics.service_metrics_weekly").fetchone()[0] == weekly
        assert conn.execute(
            "select dirty_since from dora_lib.model_state where model = 'dora_intermediate.int_subject_period_metrics'"
        ).fetchone()[0] is None  # a full build, not a slice on an empty table
