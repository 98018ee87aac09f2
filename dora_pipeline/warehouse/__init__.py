"""The warehouse: ``database.py`` (which PostgreSQL, the embedded server, connections,
migrations, pipeline locks, the reader role), ``migrations/`` (the raw and library
schemas, numbered SQL files) and ``loader.py`` (the one load path every source's records
take into ``dora_raw``). Only the pipeline, the Dagster definitions, the report and the
webhook receiver use it: no source writes the warehouse."""

from __future__ import annotations

from .database import (
    PUBLISHED_SCHEMA,
    Warehouse,
    WarehouseUnavailable,
    analyze_grown,
    apply_migrations,
    as_user,
    connect,
    ensure_reader_role,
    first_line,
    pipeline_lock,
    redact_url,
    stop_embedded,
)

__all__ = [
    "PUBLISHED_SCHEMA",
    "Warehouse",
    "WarehouseUnavailable",
    "analyze_grown",
    "apply_migrations",
    "as_user",
    "connect",
    "ensure_reader_role",
    "first_line",
    "pipeline_lock",
    "redact_url",
    "stop_embedded",
]
