"""One pipeline, every front door (CLI, Dagster backfill, nightly schedule, rebuild sensor,
tests): one run plan, extract a source's partitions, build the models, publish."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from .config import Settings
from .models import ModelGraph, build_all, load_models, model_parameters, publish
from .sources import ExtractContext, Source, all_sources
from .warehouse import Warehouse
from .warehouse.loader import LoadResult, load_partition

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


# How far back a run looks for days still holding an open incident (from its last day).
OPEN_INCIDENT_LOOKBACK_DAYS = 30


def midnight_after(day: date) -> datetime:
    """00:00 UTC of the day after ``day``: the as_of of a run whose last partition is ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def days(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@dataclass(frozen=True)
class RunPlan:
    """What one run computes, whichever front door started it (docs/operations.md, "Run plan").

    ``start``..``end``: the daily partitions to extract (UTC, inclusive); a source that is
    not partitioned (the catalog) is extracted once, as of ``end``. Incident sources also
    revisit earlier days that still hold an open incident (``revisit_days``). ``as_of``
    ends every "current" window of every model of the run: the day after ``end`` at
    00:00 UTC unless the run was given another one. Nothing here reads the wall clock.
    """

    start: date
    end: date
    as_of: datetime

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"run plan ends ({self.end}) before it starts ({self.start})")
        if self.as_of.tzinfo is None:
            raise ValueError(f"run plan as_of {self.as_of} has no time zone")

    @classmethod
    def for_range(cls, start: date, end: date, as_of: datetime | None = None) -> RunPlan:
        """``dora-pipeline run --start --end`` and a backfill of start..end."""
        if end < start:
            raise ValueError(f"--end {end} is before --start {start}")
        return cls(start, end, as_of or midnight_after(end))

    @classmethod
    def for_tick(cls, scheduled: datetime, lookback_days: int, first_day: date) -> RunPlan | None:
        """The nightly run at ``scheduled``: yesterday (UTC) and the ``lookback_days`` before
        it, never before ``first_day``; as_of is the tick's day at 00:00 UTC. None when
        there is no complete day yet."""
        end = scheduled.astimezone(UTC).date() - timedelta(days=1)
        if end < first_day:
            return None
        return cls.for_range(max(end - timedelta(days=lookback_days), first_day), end)

    @classmethod
    def for_latest(cls, latest: date) -> RunPlan:
        """A rebuild after extract-only runs (or a model materialized on its own): the
        as_of that the latest extracted partition implies."""
        return cls.for_range(latest, latest)

    @property
    def days(self) -> list[date]:
        return days(self.start, self.end)

    def revisit_days(self, open_days: Iterable[date]) -> list[date]:
        """Of the days holding open incidents, those before the range and within
        OPEN_INCIDENT_LOOKBACK_DAYS of its end: the range itself is extracted anyway."""
        since = self.end - timedelta(days=OPEN_INCIDENT_LOOKBACK_DAYS)
        return sorted({d for d in open_days if since <= d < self.start})

    def source_days(self, source: Source, open_days: Iterable[date] = ()) -> list[date]:
        """The days this run extracts of ``source``, in order: revisited days first."""
        todo = self.days if source.partitioned else [self.end]
        if source.revisit_open_incidents:
            todo = self.revisit_days(open_days) + todo
        return todo


def open_incident_days(
    warehouse: Warehouse,
    source: str,
    lookback_days: int = OPEN_INCIDENT_LOOKBACK_DAYS,
    today: date | None = None,
) -> list[date]:
    """Partition days (within ``lookback_days``) holding an unresolved incident of ``source``.

    Incidents are extracted by the day they were opened; one resolved later is only
    updated when its day is extracted again. Every run re-extracts these days too
    (``RunPlan.source_days``), so a resolution lands in place without re-reading all history.
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


def planned_days(warehouse: Warehouse, plan: RunPlan, source: Source) -> list[date]:
    """``plan.source_days`` with the open-incident days this warehouse holds: the one
    place the CLI and the Dagster extract assets decide which days a run extracts."""
    if not source.revisit_open_incidents:
        return plan.source_days(source)
    return plan.source_days(source, open_incident_days(warehouse, source.name, today=plan.end))


def latest_extracted_day(
    warehouse: Warehouse, sources: Iterable[Source] | None = None
) -> date | None:
    """The latest daily partition any partitioned source has landed (dora_raw.extract_log):
    what a rebuild without a plan of its own takes its as_of from."""
    names = [s.name for s in (all_sources() if sources is None else sources) if s.partitioned]
    with warehouse.connection() as conn:
        row = conn.execute(
            "select max(partition_date) from dora_raw.extract_log where source = any(%s)", (names,)
        ).fetchone()
    return row[0] if row else None


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
    full_refresh: bool = False,
) -> tuple[dict[str, int], dict[str, int]]:
    """Build every model (incremental ones by the slice new data can change, unless
    ``full_refresh``; ``DORA_MODEL_THREADS`` at once), then publish the marts in one
    transaction."""
    graph = graph or load_models()
    params = model_parameters(warehouse.settings, as_of)
    with warehouse.connection() as conn:
        rows = build_all(
            conn, graph, params, on_model=on_model, full_refresh=full_refresh,
            connect=warehouse.connection, threads=warehouse.settings.model_threads,
        )
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
    plan: RunPlan | None = None,
    full_refresh: bool = False,
) -> RunResult:
    """Extract every configured source for the days start..end (inclusive), then build
    and publish. ``as_of`` defaults to the day after ``end`` (midnight UTC): the run plan
    of ``RunPlan.for_range``, unless ``plan`` is given."""
    plan = plan or RunPlan.for_range(start, end, as_of)
    result = RunResult(as_of=plan.as_of)
    warehouse.migrate()
    chosen = configured_sources(warehouse.settings, sources)
    skipped = [s for s in (all_sources() if sources is None else sources) if s not in chosen]
    for source in skipped:
        log.info("source %s skipped: %s", source.name, source.skip_reason(warehouse.settings))
    started = time.monotonic()
    for source in chosen:
        todo = planned_days(warehouse, plan, source)
        revisit = [d for d in todo if d < plan.start]
        if revisit:
            log.info(
                "source %s: re-extracting %d earlier days with open incidents",
                source.name,
                len(revisit),
            )
        for day in todo:
            load = extract_partition(warehouse, source, day)
            if load is not None:
                result.loads.append(load)
                if on_load:
                    on_load(source, day, load)
    result.seconds["extract"] = time.monotonic() - started
    started = time.monotonic()
    result.model_rows, result.published = build_and_publish(
        warehouse, result.as_of, on_model=on_model, full_refresh=full_refresh
    )
    result.seconds["models"] = time.monotonic() - started
    return result
