"""One pipeline, three front doors (CLI, Dagster, tests): extract a source's partition,
build the models, publish."""

from __future__ import annotations

import logging
from datetime import date

from .config import Settings
from .loader import LoadResult, load_partition
from .sources import ExtractContext, Source
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


def configured_sources(settings: Settings, sources: tuple[Source, ...]) -> list[Source]:
    return [s for s in sources if s.skip_reason(settings) is None]
