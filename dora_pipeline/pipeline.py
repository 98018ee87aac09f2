"""One pipeline, three front doors (CLI, Dagster, tests): extract a source's partition,
build the models, publish."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from .config import Settings
from .loader import LoadResult, load_partition
from .models import ModelGraph, build_all, load_models, model_parameters, publish
from .sources import ExtractContext, Source, all_sources
from .warehouse import Warehouse

log = logging.getLogger(__name__)


def extract_partition(warehouse: Warehouse, source: Source, day: date) -> LoadResult | None:
    """Extract one UTC day of ``source`` and land it atomically. None when the source
    is not configured (logged once, never an error)."""
    reason = source.skip_reason(warehouse.settings)
    if reason:
        log.info("source %s skipped: %s", source.name, reason)
        return None
    ctx = ExtractContext(settings=warehouse.settings, warehouse_url=warehouse.url)
    records = source.extract(day, ctx)
    with warehouse.connection() as conn:
        return load_partition(conn, source.name, day, records, snapshot_tables=source.snapshot_tables)


def configured_sources(settings: Settings, sources: Iterable[Source] | None = None) -> list[Source]:
    return [s for s in (all_sources() if sources is None else sources) if s.skip_reason(settings) is None]


def open_incident_days(warehouse: Warehouse, source: str, lookback_days: int = 30,
                       today: date | None = None) -> list[date]:
    """Partition days (within ``lookback_days``) holding an unresolved incident of ``source``.

    Incidents are extracted by the day they were opened; one resolved later is only
    updated when its day is extracted again. ``run`` and the nightly schedule re-extract
    these days too, so a resolution lands in place without re-reading all history.
    """
    since = (today or datetime.now(UTC).date()) - timedelta(days=lookback_days)
    with warehouse.connection() as conn:
        rows = conn.execute(
            """
            select distinct partition_date from dora_raw.incidents
            where source = %s and resolved_at is null and partition_date >= %s
            order by 1
            """,
            (source, since),
        ).fetchall()
    return [row[0] for row in rows]


def days(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@dataclass
class RunResult:
    loads: list[LoadResult] = field(default_factory=list)
    model_rows: dict[str, int] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)
    as_of: datetime | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def rows_by_source(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for load in self.loads:
            out[load.source] = out.get(load.source, 0) + load.total_rows
        return out

    def quarantined_by_source(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for load in self.loads:
            out[load.source] = out.get(load.source, 0) + load.quarantined
        return out


def build_and_publish(
    warehouse: Warehouse,
    as_of: datetime,
    graph: ModelGraph | None = None,
    on_model: Callable | None = None,
) -> tuple[dict[str, int], dict[str, int]]:
    """Build every model, then publish the marts in one transaction."""
    graph = graph or load_models()
    params = model_parameters(warehouse.settings, as_of)
    with warehouse.connection() as conn:
        rows = build_all(conn, graph, params, on_model=on_model)
        published = publish(conn, graph.marts, warehouse.settings.reader_role)
    return rows, published


def run(
    warehouse: Warehouse,
    start: date,
    end: date,
    as_of: datetime | None = None,
    sources: Iterable[Source] | None = None,
    on_load: Callable[[Source, date, LoadResult], None] | None = None,
    on_model: Callable | None = None,
) -> RunResult:
    """Extract every configured source for the days start..end (inclusive), then build
    and publish. ``as_of`` defaults to the day after ``end`` (midnight UTC)."""
    result = RunResult()
    result.as_of = as_of or datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    warehouse.migrate()
    chosen = configured_sources(warehouse.settings, sources)
    skipped = [s for s in (all_sources() if sources is None else sources) if s not in chosen]
    for source in skipped:
        log.info("source %s skipped: %s", source.name, source.skip_reason(warehouse.settings))
    started = time.monotonic()
    for source in chosen:
        todo = days(start, end) if source.partitioned else [end]
        if source.revisit_open_incidents:
            revisit = [d for d in open_incident_days(warehouse, source.name, today=end) if d not in todo]
            if revisit:
                log.info("source %s: re-extracting %d earlier days with open incidents", source.name, len(revisit))
            todo = revisit + todo
        for day in todo:
            load = extract_partition(warehouse, source, day)
            if load is not None:
                result.loads.append(load)
                if on_load:
                    on_load(source, day, load)
    result.seconds["extract"] = time.monotonic() - started
    started = time.monotonic()
    result.model_rows, result.published = build_and_publish(warehouse, result.as_of, on_model=on_model)
    result.seconds["models"] = time.monotonic() - started
    return result
