"""Figure 1: rows/s of the project's loader vs a raw ``COPY … FROM STDIN`` of the same rows.

Both land the same days of synthetic events, one transaction per day (the production
path: one ``load_partition`` per UTC day), into empty tables with the same indexes and
constraints. The records are generated before the clock starts. The loader's time
includes validating every record in Python, the quarantine, and the COPY straight into
the raw tables (a new partition; a re-extracted one goes through a temporary table and
``INSERT … ON CONFLICT``); the raw COPY's is only the COPY. Neither runs ANALYZE: the
model build analyzes the raw tables a load grew (``warehouse.analyze_grown``).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from functools import partial

import psycopg
from common import END, PSEUDONYM_KEY, SEED, Server, Size
from psycopg import sql

from dora_pipeline.demo.organisation import Organisation, events_of_day
from dora_pipeline.privacy import pseudonymise
from dora_pipeline.records import Incident, InvalidRecord
from dora_pipeline.warehouse import apply_migrations
from dora_pipeline.warehouse.loader import TABLES, _row, load_partition

# Every raw table a daily partition writes (the catalog snapshot tables excepted).
EVENT_TABLES = tuple(t for t in TABLES if t not in ("catalog_entities", "group_memberships"))


def _days(size: Size) -> list[date]:
    return [END - timedelta(days=i) for i in range(size.load_days - 1, -1, -1)]


def _records(size: Size) -> dict[date, list]:
    org = Organisation(SEED, size.teams, size.services, END, size.days)
    pseudo = partial(pseudonymise, key=PSEUDONYM_KEY)
    return {day: list(events_of_day(org, day, pseudo)) for day in _days(size)}


def _raw_rows(records: dict[date, list], now: datetime) -> dict[date, dict[str, list[tuple]]]:
    """The rows the loader writes, per day and table, built outside the clock."""
    out = {}
    for day, batch in records.items():
        tables: dict[str, dict] = {t: {} for t in EVENT_TABLES}
        for record in batch:
            try:
                record.validate(now)
            except InvalidRecord:
                continue
            table, row = _row(record, day)
            spec = TABLES[table]
            tables[table][tuple(row[spec.columns.index(c)] for c in spec.key)] = row
            if isinstance(record, Incident):
                for key_type, key in record.affected:
                    comp = (record.source, record.external_id, key_type, key)
                    tables["incident_components"][comp] = comp
        out[day] = {t: list(rows.values()) for t, rows in tables.items()}
    return out


def _reset(conn: psycopg.Connection) -> None:
    conn.execute("drop schema if exists dora_raw, dora_lib, copy_target cascade")
    apply_migrations(conn)
    conn.execute("create schema copy_target")
    for table in EVENT_TABLES:
        conn.execute(
            sql.SQL("create table {} (like {} including all)").format(
                sql.Identifier("copy_target", table), sql.Identifier("dora_raw", table)
            )
        )
    conn.commit()


def _run_loader(url: str, records: dict[date, list], now: datetime) -> tuple[float, int]:
    rows = 0
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for day, batch in records.items():
            rows += load_partition(conn, "synthetic", day, batch, now=now).total_rows
        return time.perf_counter() - started, rows


def _types(conn: psycopg.Connection, table: str) -> list[str]:
    return [
        t for (t,) in conn.execute(
            "select format_type(a.atttypid, a.atttypmod) from unnest(%s::text[]) with ordinality as c(name, n)"
            " join pg_attribute as a on a.attrelid = %s::regclass and a.attname = c.name order by c.n",
            (list(TABLES[table].columns), f"copy_target.{table}"),
        )
    ]


def _run_copy(url: str, rows_by_day: dict[date, dict[str, list[tuple]]], binary: bool) -> tuple[float, int]:
    """COPY FROM STDIN of the loader's rows; text is COPY's default format, binary the
    fastest a Python client can produce."""
    rows = 0
    fmt = sql.SQL(" (format binary)" if binary else "")
    with psycopg.connect(url) as conn:
        conn.execute("truncate " + ", ".join(f"copy_target.{t}" for t in EVENT_TABLES))
        conn.commit()
        types = {t: _types(conn, t) for t in EVENT_TABLES}
        started = time.perf_counter()
        for tables in rows_by_day.values():
            with conn.transaction():
                for table, batch in tables.items():
                    if not batch:
                        continue
                    cols = sql.SQL(", ").join(map(sql.Identifier, TABLES[table].columns))
                    target = sql.Identifier("copy_target", table)
                    with conn.cursor().copy(sql.SQL("copy {} ({}) from stdin{}").format(target, cols, fmt)) as copy:
                        if binary:
                            copy.set_types(types[table])
                        for row in batch:
                            copy.write_row(row)
                    rows += len(batch)
        return time.perf_counter() - started, rows


def _validation_seconds(records: dict[date, list], now: datetime) -> float:
    started = time.perf_counter()
    for batch in records.values():
        for record in batch:
            try:
                record.validate(now)
            except InvalidRecord:
                pass
    return time.perf_counter() - started


def measure(server: Server, size: Size, repeats: int = 2) -> dict:
    now = datetime.now(UTC)
    records = _records(size)
    rows_by_day = _raw_rows(records, now)
    url = server.database(f"bench_load_{size.name}", fresh=True)
    best = {"loader": float("inf"), "copy_text": float("inf"), "copy_binary": float("inf")}
    counts = {}
    for _ in range(repeats):  # interleaved, best of each: neighbours make the machine noisy
        with psycopg.connect(url) as conn:
            _reset(conn)
        seconds, counts["loader"] = _run_loader(url, records, now)
        best["loader"] = min(best["loader"], seconds)
        for name, binary in (("copy_text", False), ("copy_binary", True)):
            seconds, counts[name] = _run_copy(url, rows_by_day, binary)
            best[name] = min(best[name], seconds)
    if len(set(counts.values())) != 1:
        raise AssertionError(f"the loader and raw COPY wrote different row counts: {counts}")
    rows = counts["loader"]
    rate = {name: rows / seconds for name, seconds in best.items()}
    return {
        "days": len(records),
        "records": sum(len(b) for b in records.values()),
        "rows": rows,
        "seconds": best,
        "rows_per_s": rate,
        "ratio_vs_copy_text": rate["loader"] / rate["copy_text"],
        "ratio_vs_copy_binary": rate["loader"] / rate["copy_binary"],
        "validation_seconds": _validation_seconds(records, now),
    }
